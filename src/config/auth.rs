//! `server.auth`: a bearer token that `/v1/infer` and the live page (`/ui`) require, read from a
//! file, an SSM parameter (a SecureString) or an S3 object when the config is loaded
//! (`cli::load_config`, like the watchlists). The health probes and `/metrics` stay open: the
//! load balancer keeps them inside the VPC.

use serde::{Deserialize, Serialize};

/// The configuration: where the token is.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// A file, `ssm:/name` or `s3://bucket/key` holding the token (surrounding whitespace is
    /// not part of it).
    pub token_from: String,
}

/// Shorter tokens are refused: a token guards the models and the zone editor.
pub const MIN_TOKEN_CHARS: usize = 16;

/// The token, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(…)")
    }
}

impl ApiToken {
    /// The token in `text`, or why it is not usable.
    pub fn parse(text: &str) -> Result<Self, String> {
        let token = text.trim();
        if token.chars().count() < MIN_TOKEN_CHARS {
            return Err(format!("the token is shorter than {MIN_TOKEN_CHARS} characters"));
        }
        if !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err("the token must be printable ASCII without spaces".to_owned());
        }
        Ok(Self(token.to_owned()))
    }

    /// Whether `candidate` is the token, in time that does not depend on where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        let mut diff = a.len() ^ b.len();
        for (i, x) in a.iter().enumerate() {
            diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_printable_and_compared_whole() {
        assert!(ApiToken::parse("short").is_err());
        assert!(ApiToken::parse("has a space in the middle").is_err());
        let t = ApiToken::parse("  0123456789abcdef-xyz\n").expect("token");
        assert!(t.matches("0123456789abcdef-xyz"));
        assert!(!t.matches("0123456789abcdef-xy") && !t.matches("0123456789abcdef-xyz0") && !t.matches(""));
        assert_eq!(format!("{t:?}"), "ApiToken(…)", "never printed");
    }
}
