//! What the `kvs-infer` service and the `kvs-infer-recovery` Lambda function share, and nothing
//! else: neither crate builds the other's dependencies through this one.
//!
//! | module | owns |
//! |---|---|
//! | [`exit`] | the exit-code contract between the service and the recovery function (86 = GPU fault) |
//! | [`backoff`] | retry delays: doubling with full jitter |
//! | [`aws`] | the shared AWS SDK configuration (credentials chain, region, endpoint, timeouts, retries) |
//! | [`telemetry`] | the tracing subscriber (human text or JSON lines for CloudWatch) |
//! | [`error_chain`], [`BoxError`] | an error and its sources on one line, for logs; a remote error kept as a source |
#![warn(clippy::unwrap_used)]

pub mod aws;
pub mod backoff;
pub mod exit;
pub mod telemetry;

/// A boxed error from a remote service, kept as the source of a layer's own error (the AWS SDK's
/// error types are generic per operation).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error and all its sources on one line, for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("cannot read the config")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn the_chain_names_every_cause_in_order() {
        let e = Outer(std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"));
        assert_eq!(error_chain(&e), "cannot read the config: no such file");
    }
}
