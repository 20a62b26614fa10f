//! The AWS SDK configuration both binaries start from.
//!
//! Credentials come only from the SDK's default chain (on ECS: the task role through the
//! container credentials endpoint; on Lambda: the function's role); nothing secret is read from
//! a config file or logged. An endpoint override sends every service to one place (an emulator,
//! a VPC endpoint); the SDK's own `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` variables
//! work as usual.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Time to open a connection to an AWS endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One attempt of a request/response call (not GetMedia, whose body streams for ~45 minutes).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// The SDK's own retries per call; callers retry on top, with their own backoff.
pub const SDK_ATTEMPTS: u32 = 2;

/// Where the SDK should send calls; `None`s leave the SDK's own chain in charge.
#[derive(Debug, Clone, Default)]
pub struct Endpoint<'a> {
    pub region: Option<&'a str>,
    pub url: Option<&'a str>,
}

/// The shared SDK configuration (region, endpoint, timeouts, retries, credentials chain).
pub async fn sdk_config(endpoint: Endpoint<'_>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(SDK_ATTEMPTS));
    if let Some(region) = endpoint.region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    if let Some(url) = endpoint.url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}
