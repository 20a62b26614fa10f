//! Events as consumers see them in Kinesis: by `event_id`, duplicates removed.

use std::collections::BTreeMap;

/// One event without what differs between deliveries (`emitted_at`) and configurations (the
/// local sink's `snapshot` path), with its id.
fn comparable(mut record: serde_json::Value) -> (String, serde_json::Value) {
    let o = record.as_object_mut().expect("an event object");
    o.remove("emitted_at");
    o.remove("snapshot");
    (o["event_id"].as_str().expect("id").to_owned(), record)
}

/// The records by `event_id`, as a consumer that removes duplicates keeps them; a record
/// published twice must be the same event both times.
pub fn deduplicated(records: Vec<serde_json::Value>) -> BTreeMap<String, serde_json::Value> {
    let mut seen = BTreeMap::new();
    for (id, event) in records.into_iter().map(comparable) {
        if let Some(earlier) = seen.get(&id) {
            assert_eq!(earlier, &event, "{id} was published twice as different events");
        }
        seen.insert(id, event);
    }
    seen
}
