//! AWS clients of the service, built on the shared SDK configuration
//! ([`kvs_infer_common::aws`]). With an endpoint override S3 uses path-style addressing
//! (emulators and most private endpoints have no per-bucket DNS).

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use kvs_infer_common::aws::{CONNECT_TIMEOUT, Endpoint};

use crate::config::AwsConfig;

/// The shared SDK configuration with `aws:`'s region and endpoint.
pub async fn sdk_config(cfg: &AwsConfig) -> SdkConfig {
    kvs_infer_common::aws::sdk_config(Endpoint { region: cfg.region.as_deref(), url: cfg.endpoint_url.as_deref() })
        .await
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
