//! This task's name in the lease table: `fleet.task_id` when set, else the ECS task ARN (from the
//! container metadata endpoint v4, `$ECS_CONTAINER_METADATA_URI_V4/task`), else
//! `{hostname}-{pid}`.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;

/// The environment variable ECS sets to the task's metadata endpoint.
pub const METADATA_ENV: &str = "ECS_CONTAINER_METADATA_URI_V4";
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

/// This task's name: `configured`, else the ECS task ARN, else `{hostname}-{pid}`.
pub async fn resolve(configured: Option<&str>) -> String {
    if let Some(id) = configured {
        return id.to_owned();
    }
    if let Ok(base) = std::env::var(METADATA_ENV) {
        match task_arn(&base).await {
            Some(arn) => return arn,
            None => {
                tracing::warn!(endpoint = %base, "fleet: no TaskARN from the ECS metadata endpoint; naming the task by host and pid")
            }
        }
    }
    host_and_pid()
}

async fn task_arn(base: &str) -> Option<String> {
    let uri: hyper::Uri = format!("{}/task", base.trim_end_matches('/')).parse().ok()?;
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let fetch = async {
        let response = client.get(uri).await.ok()?;
        let body = response.into_body().collect().await.ok()?.to_bytes();
        from_task_metadata(&String::from_utf8_lossy(&body))
    };
    tokio::time::timeout(METADATA_TIMEOUT, fetch).await.ok().flatten()
}

/// The task ARN from an ECS task metadata document (`{"TaskARN": "..."}`).
pub fn from_task_metadata(json: &str) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_str(json).ok()?;
    doc.get("TaskARN")?.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// `{hostname}-{pid}`, the name outside ECS.
pub fn host_and_pid() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_arn_comes_from_the_metadata_document() {
        let doc = r#"{"Cluster":"c","TaskARN":"arn:aws:ecs:eu-west-1:123456789012:task/c/0f1e","Family":"kvs-infer"}"#;
        assert_eq!(from_task_metadata(doc).as_deref(), Some("arn:aws:ecs:eu-west-1:123456789012:task/c/0f1e"));
        assert_eq!(from_task_metadata("{}"), None);
        assert_eq!(from_task_metadata("not json"), None);
        assert!(host_and_pid().ends_with(&format!("-{}", std::process::id())));
    }
}
