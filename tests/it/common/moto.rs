//! The AWS emulator (from the testkit) and what the service's end-to-end tests create in it.

pub use kvs_infer_testkit::moto::*;

/// Resources the end-to-end tests use.
pub async fn create_resources(sdk: &aws_config::SdkConfig, stream: &str, bucket: &str, state: &str, events: &str) {
    let kinesis = aws_sdk_kinesis::Client::new(sdk);
    kinesis.create_stream().stream_name(stream).shard_count(1).send().await.expect("create stream");
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(sdk).force_path_style(true).build());
    s3.create_bucket().bucket(bucket).send().await.expect("create bucket");
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    for (table, key) in [(state, "camera"), (events, "event_id")] {
        create_table(&ddb, table, key).await;
    }
}

/// Every record in a one-shard stream, data parsed as JSON.
pub async fn read_stream(sdk: &aws_config::SdkConfig, stream: &str) -> Vec<serde_json::Value> {
    let kinesis = aws_sdk_kinesis::Client::new(sdk);
    let shards = kinesis.list_shards().stream_name(stream).send().await.expect("list shards");
    let mut out = Vec::new();
    for shard in shards.shards() {
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("iterator")
            .shard_iterator
            .expect("iterator value");
        loop {
            let page = kinesis.get_records().shard_iterator(&iterator).limit(1000).send().await.expect("get records");
            let n = page.records().len();
            for r in page.records() {
                out.push(serde_json::from_slice(r.data().as_ref()).expect("record is JSON"));
            }
            match page.next_shard_iterator {
                Some(next) if n > 0 => iterator = next,
                _ => break,
            }
        }
    }
    out
}
