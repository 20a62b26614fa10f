//! Where the configuration comes from: a file, an SSM parameter (`ssm:/name`) or an S3 object
//! (`s3://bucket/key`). This module only names the place; `cli::remote_config` fetches the
//! remote ones (the config layer does not speak AWS).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A place to read the YAML configuration from (`--config` / `CONFIG_FILE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigLocation {
    /// A local file.
    File(PathBuf),
    /// An SSM parameter (String or SecureString), by name: `ssm:/kvs-infer/prod/config`, or one
    /// version of it: `ssm:/kvs-infer/prod/config:12`.
    SsmParameter(String),
    /// An S3 object: `s3://bucket/key`.
    S3Object { bucket: String, key: String },
}

/// A `ssm:` or `s3://` location that names nothing usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("`{0}`: an SSM location is ssm:<parameter name>, e.g. ssm:/kvs-infer/prod/config")]
    SsmName(String),
    #[error("`{0}`: an S3 location is s3://<bucket>/<key>, e.g. s3://my-config-bucket/kvs-infer/config.yaml")]
    S3Url(String),
}

const SSM_SCHEME: &str = "ssm:";
const S3_SCHEME: &str = "s3://";
/// SSM's own limit on a parameter name (the full path).
const MAX_SSM_NAME: usize = 2048;

/// The parameter's name in `name` or `name:version` (a version selector is no part of the name,
/// nor of the parameter's ARN).
pub fn ssm_parameter_name(selected: &str) -> &str {
    match selected.rsplit_once(':') {
        Some((name, version)) if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => selected,
    }
}

impl ConfigLocation {
    /// Whether reading it needs AWS.
    pub fn is_remote(&self) -> bool {
        !matches!(self, Self::File(_))
    }
}

impl FromStr for ConfigLocation {
    type Err = LocationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(selected) = s.strip_prefix(SSM_SCHEME) {
            // `name:version` selects one version (a task definition pins the config it was
            // rendered with, so a rollback runs with its own config).
            let name = ssm_parameter_name(selected);
            let valid = |c: char| c.is_ascii_alphanumeric() || "_.-/".contains(c);
            if name.is_empty() || name.len() > MAX_SSM_NAME || !name.chars().all(valid) || name.ends_with('/') {
                return Err(LocationError::SsmName(s.to_owned()));
            }
            return Ok(Self::SsmParameter(selected.to_owned()));
        }
        if let Some(rest) = s.strip_prefix(S3_SCHEME) {
            return match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() && !key.ends_with('/') => {
                    Ok(Self::S3Object { bucket: bucket.to_owned(), key: key.to_owned() })
                }
                _ => Err(LocationError::S3Url(s.to_owned())),
            };
        }
        Ok(Self::File(PathBuf::from(s)))
    }
}

impl fmt::Display for ConfigLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::SsmParameter(name) => write!(f, "{SSM_SCHEME}{name}"),
            Self::S3Object { bucket, key } => write!(f, "{S3_SCHEME}{bucket}/{key}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_kinds_and_prints_them_back() {
        for (text, want) in [
            ("config/local.yaml", ConfigLocation::File("config/local.yaml".into())),
            ("/etc/kvs-infer/config.yaml", ConfigLocation::File("/etc/kvs-infer/config.yaml".into())),
            ("ssm:/kvs-infer/prod/config", ConfigLocation::SsmParameter("/kvs-infer/prod/config".into())),
            ("ssm:flat-name", ConfigLocation::SsmParameter("flat-name".into())),
            ("ssm:/kvs-infer/prod/config:12", ConfigLocation::SsmParameter("/kvs-infer/prod/config:12".into())),
            (
                "s3://bucket/kvs-infer/config.yaml",
                ConfigLocation::S3Object { bucket: "bucket".into(), key: "kvs-infer/config.yaml".into() },
            ),
        ] {
            let parsed: ConfigLocation = text.parse().expect(text);
            assert_eq!(parsed, want);
            assert_eq!(parsed.to_string(), text);
            assert_eq!(parsed.is_remote(), !text.contains(".yaml") || text.starts_with("s3://"));
        }
    }

    #[test]
    fn rejects_locations_that_name_nothing() {
        for bad in [
            "ssm:",
            "ssm:/a b",
            "ssm:/dir/",
            "ssm:/a:b",
            "ssm:/a:",
            "s3://",
            "s3://bucket",
            "s3://bucket/",
            "s3:///key",
            "s3://b/dir/",
        ] {
            let err = bad.parse::<ConfigLocation>().expect_err(bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
