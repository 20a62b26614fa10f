//! AWS client construction: one shared SDK configuration for every client.
//!
//! Credentials come only from the SDK's default chain (on ECS: the task role through the
//! container credentials endpoint); nothing secret is read from the config file or logged.
//! Endpoints: `aws.endpoint_url` sends every service to one place (an emulator, a VPC endpoint);
//! the SDK's own `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` variables work as usual
//! (`..._KINESIS`, `..._S3`, `..._DYNAMODB`, `..._KINESIS_VIDEO`). With an endpoint override S3
//! uses path-style addressing (emulators and most private endpoints have no per-bucket DNS).

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::config::AwsConfig;

/// Time to open a connection to an AWS endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One attempt of a request/response call (not GetMedia, whose body streams for ~45 minutes).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// The SDK's own retries per call; the sinks and the KVS source retry on top, forever, with backoff.
pub const SDK_ATTEMPTS: u32 = 2;

/// The shared SDK configuration (region, endpoint, timeouts, retries, credentials chain).
pub async fn sdk_config(cfg: &AwsConfig) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(SDK_ATTEMPTS));
    if let Some(region) = &cfg.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &cfg.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    loader.load().await
}

/// Whether S3 calls go somewhere other than AWS's own S3 endpoints.
fn s3_endpoint_overridden(cfg: &AwsConfig) -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty());
    cfg.endpoint_url.is_some() || set("AWS_ENDPOINT_URL_S3") || set("AWS_ENDPOINT_URL")
}

pub fn s3_client(sdk: &SdkConfig, cfg: &AwsConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk).force_path_style(s3_endpoint_overridden(cfg)).build();
    aws_sdk_s3::Client::from_conf(conf)
}

pub fn kinesis_client(sdk: &SdkConfig) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(sdk)
}

pub fn dynamodb_client(sdk: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(sdk)
}

pub fn kinesis_video_client(sdk: &SdkConfig) -> aws_sdk_kinesisvideo::Client {
    aws_sdk_kinesisvideo::Client::new(sdk)
}

/// A GetMedia client for the data endpoint GetDataEndpoint returned. No attempt timeout: the
/// body streams for as long as the stream lives; the source applies its own idle timeout.
pub fn kinesis_video_media_client(sdk: &SdkConfig, data_endpoint: &str) -> aws_sdk_kinesisvideomedia::Client {
    let conf = aws_sdk_kinesisvideomedia::config::Builder::from(sdk)
        .endpoint_url(data_endpoint)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .disable_operation_timeout()
                .disable_operation_attempt_timeout()
                .build(),
        )
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_kinesisvideomedia::Client::from_conf(conf)
}
