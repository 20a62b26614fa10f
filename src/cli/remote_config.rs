//! Fetching a configuration kept in AWS: an SSM parameter (`ssm:/name`, String or SecureString)
//! or an S3 object (`s3://bucket/key`). The task reads its YAML this way on ECS, so no host
//! folder has to exist. Credentials, region and endpoint come from the SDK's default chain and
//! its `AWS_*` variables (the config that would say otherwise is what is being fetched).
//!
//! A failure names the place and, for a denied read, the action and resource the task role
//! needs; `serve` fails stage `starting` with it and exits 1.

use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;

use crate::config::parse::MAX_CONFIG_BYTES;
use crate::config::{AwsConfig, ConfigLocation};

/// Why a remote config could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{what} does not exist (region {region})")]
    NotFound { what: String, region: String },
    #[error("reading {what} was denied ({code}): the task role needs {action} on {resource}{extra}")]
    Denied { what: String, code: String, action: &'static str, resource: String, extra: &'static str },
    #[error("cannot read {what}: {detail}")]
    Failed { what: String, detail: String },
    #[error("cannot start an async runtime to fetch the config")]
    Runtime(#[source] std::io::Error),
}

/// The bytes of the config at `location` (a remote one; files are read by `config::load_file`).
pub fn fetch(location: &ConfigLocation) -> Result<Vec<u8>, FetchError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(FetchError::Runtime)?;
    runtime.block_on(fetch_async(location))
}

async fn fetch_async(location: &ConfigLocation) -> Result<Vec<u8>, FetchError> {
    let aws = AwsConfig::default();
    let sdk = crate::aws::sdk_config(&aws).await;
    let region = sdk.region().map_or_else(|| "unset".to_owned(), ToString::to_string);
    let what = match location {
        ConfigLocation::SsmParameter(name) => format!("SSM parameter {name}"),
        ConfigLocation::S3Object { bucket, key } => format!("S3 object s3://{bucket}/{key}"),
        ConfigLocation::File(path) => format!("file {}", path.display()),
    };
    match location {
        ConfigLocation::SsmParameter(name) => {
            let reply = aws_sdk_ssm::Client::new(&sdk).get_parameter().name(name).with_decryption(true).send().await;
            match reply {
                Ok(out) => Ok(out.parameter.and_then(|p| p.value).unwrap_or_default().into_bytes()),
                Err(e) => Err(classify(&e, reply_code(&e), what, region, ssm_permission(name))),
            }
        }
        ConfigLocation::S3Object { bucket, key } => {
            // One byte over the limit is enough for the size check to say "too large".
            let range = format!("bytes=0-{MAX_CONFIG_BYTES}");
            let client = crate::aws::s3_client(&sdk, &aws);
            let reply = client.get_object().bucket(bucket).key(key).range(range).send().await;
            let out = match reply {
                Ok(out) => out,
                Err(e) => return Err(classify(&e, reply_code(&e), what, region, s3_permission(bucket, key))),
            };
            let body = out.body.collect().await.map_err(|e| FetchError::Failed { what, detail: e.to_string() })?;
            Ok(body.into_bytes().to_vec())
        }
        ConfigLocation::File(_) => Err(FetchError::Failed { what, detail: "a file is not fetched".into() }),
    }
}

/// The error code of a failed call; a 403 whose body the SDK could not read counts as
/// `Forbidden` (an emulator or proxy may answer a JSON-protocol call with an XML or empty body).
fn reply_code<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> Option<&str> {
    e.code().or_else(|| e.raw_response().filter(|r| r.status().as_u16() == 403).map(|_| "Forbidden"))
}

/// What a denied read lacks: (action, resource, extra advice).
type Permission = (&'static str, String, &'static str);

fn ssm_permission(name: &str) -> Permission {
    let name = crate::config::location::ssm_parameter_name(name);
    let path = if name.starts_with('/') { name.to_owned() } else { format!("/{name}") };
    (
        "ssm:GetParameter",
        format!("arn:aws:ssm:<region>:<account>:parameter{path}"),
        " (and kms:Decrypt on its key for a SecureString)",
    )
}

fn s3_permission(bucket: &str, key: &str) -> Permission {
    (
        "s3:GetObject",
        format!("arn:aws:s3:::{bucket}/{key}"),
        " (and kms:Decrypt on the bucket's key if it uses SSE-KMS)",
    )
}

fn classify(
    error: &(dyn std::error::Error + 'static),
    code: Option<&str>,
    what: String,
    region: String,
    (action, resource, extra): Permission,
) -> FetchError {
    match code {
        Some("ParameterNotFound" | "NoSuchKey" | "NoSuchBucket" | "NotFound") => FetchError::NotFound { what, region },
        Some(code @ ("AccessDenied" | "AccessDeniedException" | "Forbidden")) => {
            FetchError::Denied { what, code: code.to_owned(), action, resource, extra }
        }
        _ => FetchError::Failed { what, detail: kvs_infer_common::error_chain(error) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_place_and_what_the_role_lacks() {
        let io = std::io::Error::other("boom");
        let denied = classify(
            &io,
            Some("AccessDeniedException"),
            "SSM parameter /a/b".into(),
            "eu-west-1".into(),
            ssm_permission("/a/b"),
        );
        let text = denied.to_string();
        assert!(text.contains("SSM parameter /a/b") && text.contains("ssm:GetParameter"), "{text}");
        assert!(text.contains("parameter/a/b"), "{text}");
        let flat = ssm_permission("flat").1;
        assert!(flat.ends_with(":parameter/flat"), "{flat}");
        let missing =
            classify(&io, Some("NoSuchKey"), "S3 object s3://b/k".into(), "eu-west-1".into(), s3_permission("b", "k"));
        assert!(matches!(missing, FetchError::NotFound { .. }));
        assert!(missing.to_string().contains("s3://b/k") && missing.to_string().contains("eu-west-1"));
        let denied =
            classify(&io, Some("AccessDenied"), "S3 object s3://b/k".into(), "r".into(), s3_permission("b", "k"));
        assert!(denied.to_string().contains("s3:GetObject on arn:aws:s3:::b/k"), "{denied}");
        let other = classify(&io, None, "S3 object s3://b/k".into(), "r".into(), s3_permission("b", "k"));
        assert!(other.to_string().contains("boom"), "{other}");
    }
}
