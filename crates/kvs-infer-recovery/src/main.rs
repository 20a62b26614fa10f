//! `kvs-infer-recovery`: the GPU recovery Lambda function (custom runtime, `bootstrap`).
//!
//! Configuration comes from environment variables (`docs/recovery.md`); an invalid one stops the
//! function at its first start with every problem listed. Each invocation is one EventBridge
//! event; the response is the [`Outcome`](kvs_infer_recovery::Outcome) as JSON. Malformed events
//! are acknowledged (logged, never retried); a failed AWS call is an error, so Lambda retries.

use std::process::ExitCode;

use kvs_infer_common::aws::{Endpoint, sdk_config};
use kvs_infer_common::error_chain;
use kvs_infer_common::telemetry::{self, LogFormat};
use kvs_infer_recovery::{self as recovery, config::RecoveryConfig};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> ExitCode {
    let level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "info".into());
    telemetry::init(&level, LogFormat::Json);
    let cfg = match RecoveryConfig::from_env() {
        Ok(cfg) => cfg,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            return ExitCode::FAILURE;
        }
    };
    // lambda_runtime panics on a missing runtime variable; say what is wrong instead.
    for var in ["AWS_LAMBDA_RUNTIME_API", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION"] {
        if std::env::var(var).is_err() {
            tracing::error!(variable = var, "not running inside AWS Lambda: {var} is not set");
            return ExitCode::FAILURE;
        }
    }
    let sdk = sdk_config(Endpoint::default()).await;
    let recovery = recovery::from_sdk(cfg, &sdk);
    let recovery = &recovery;
    let handler = service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        // Boxed: the handler's future nests inside the runtime's, and unboxed the optimised
        // build's layout computation overflows the compiler's query depth.
        match Box::pin(recovery.handle(&event.payload)).await {
            Ok(outcome) => Ok(serde_json::to_value(outcome)?),
            Err(e) => {
                let chain = error_chain(&e);
                tracing::error!(request_id = %event.context.request_id, error = %chain, "event failed; Lambda will retry it");
                Err(lambda_runtime::Error::from(chain))
            }
        }
    });
    match lambda_runtime::run(handler).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the Lambda runtime loop ended");
            ExitCode::FAILURE
        }
    }
}
