//! Nothing lost, nothing doubled (issue 15), through the GetMedia test server serving the plate
//! video as a 12-fragment KVS capture at full speed: a backlog is analysed frame by frame and
//! checkpointed to its last fragment, a second start reads nothing; the same capture gives the
//! same events run after run and across a kill; an idle stream ends its tracks; a backlog past
//! `skip_after` jumps to live.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::kvs_camera::{CAMERA, CameraRun, STREAM, engine_and_camera};
use crate::common::kvs_capture::{Stamps, capture};
use crate::common::kvs_server::{Fault, Fragment, KvsServer};
use crate::common::moto::{self, Moto};
use kvs_infer::config::{CameraId, CatchUp, StartSelector};
use kvs_infer::pipeline::events::Event;
use kvs_infer::source::checkpoint::Checkpoints;

const VIDEO: &str = "tests/fixtures/sample/plates.mkv";
/// 12 one-second fragments at 25 fps, sampled at 5 fps: 5 frames each.
const SAMPLED: u64 = 60;
const IDLE_END: Duration = Duration::from_secs(2);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The plate video as KVS serves a two-minute-old backlog, its tags written at live (so only
/// the pace of the read, not the tags, says it is a backlog).
fn backlog() -> Vec<Fragment> {
    let fragments = capture(VIDEO, &Stamps { producer_start_ms: now_ms() - 120_000, behind_ms: |_| 800 });
    assert_eq!(fragments.len(), 12);
    fragments
}

async fn checkpoint_table(moto: &Moto, table: &str) -> Arc<Checkpoints> {
    let ddb = aws_sdk_dynamodb::Client::new(&moto.sdk().await);
    moto::create_table(&ddb, table, "stream").await;
    Arc::new(Checkpoints::new(ddb, table.into(), STREAM.into(), CameraId(CAMERA.into())))
}

fn by_id(events: &[Event]) -> BTreeMap<String, Event> {
    events.iter().map(|e| (e.event_id.clone(), e.clone())).collect()
}

/// Runs until the last fragment is analysed and its tracks ended on idle; returns the run.
async fn until_the_end(run: &CameraRun, last: &str, ends: usize) -> Duration {
    run.wait_until("the last fragment is analysed", |r| r.processed().as_deref() == Some(last)).await;
    let analysed = Instant::now();
    run.wait_until("the open tracks end on idle", |r| {
        r.events().iter().filter(|e| e.kind.as_str() == "end").count() >= ends
    })
    .await;
    analysed.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_at_full_speed_is_analysed_once_checkpointed_to_its_end_and_not_read_again() {
    let fragments = backlog();
    let size = |i: usize| fragments[i].bytes.len();
    let faults = vec![
        // Cut in the middle of fragment 3, cleanly; then throttled; then aborted in fragment 6.
        Fault::EndAfter(size(0) + size(1) + size(2) / 2),
        Fault::Throttle,
        Fault::AbortAfter(size(2) + size(3) + size(4) + size(5) / 2),
    ];
    let server = KvsServer::start(fragments.clone(), faults).await;
    let moto = Moto::start();
    let checkpoints = checkpoint_table(&moto, "catch-up").await;
    let (engine, mut camera, _worker) = engine_and_camera().await;
    camera.tracking.idle_end = Some(IDLE_END);
    camera.idle_end = IDLE_END;

    let run = CameraRun::start(&server, &engine, &camera, StartSelector::Earliest, Some(checkpoints.clone())).await;
    let last = fragments[11].number.clone();
    let idle = until_the_end(&run, &last, 1).await;
    // Every track ends (the last ones on idle: `idle_end`), and the checkpoint says so.
    run.wait_until("every track ended", |r| {
        let events = r.events();
        let count = |kind: &str| events.iter().filter(|e| e.kind.as_str() == kind).count();
        count("new") > 0 && count("new") == count("end")
    })
    .await;
    let mut stored = None;
    for _ in 0..200 {
        stored = checkpoints.read().await.expect("read").map(|c| c.fragment.to_string());
        if stored.as_deref() == Some(last.as_str()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored.as_deref(), Some(last.as_str()), "the checkpoint ends on the last fragment");
    let (stats, events) = run.stop().await;

    assert_eq!(stats.frames_decoded, 300, "every frame once: {stats:?}");
    assert!(stats.frames_repeated > 0, "the cut fragments were re-read: {stats:?}");
    assert_eq!(stats.frames_sampled, SAMPLED, "{stats:?}");
    // Motion gating may find a sampled frame still (the sample's background does not move).
    assert_eq!(
        stats.frames_analysed + stats.frames_still,
        SAMPLED,
        "every sampled frame analysed or found still: {stats:?}"
    );
    assert_eq!(stats.frames_dropped, 0, "a backlog waits for inference instead of dropping: {stats:?}");
    assert!(events.iter().any(|e| e.text.as_deref() == Some("KVS 2026")), "{events:#?}");
    assert!(idle <= IDLE_END + Duration::from_secs(1), "tracks ended {idle:?} after the last frame");

    // A second start resumes after the last fragment: nothing to read, nothing published.
    let calls = server.calls().len();
    let again = CameraRun::start(&server, &engine, &camera, StartSelector::Earliest, Some(checkpoints)).await;
    again.wait_until("the second start asked for more", |_| server.calls().len() > calls).await;
    let resumed = &server.calls()[calls];
    assert_eq!(resumed.selector["AfterFragmentNumber"], last.as_str());
    // The idle end was checkpointed too: no track is left to end again.
    tokio::time::sleep(IDLE_END * 2 + Duration::from_secs(1)).await;
    let (stats, events) = again.stop().await;
    assert_eq!((stats.frames_decoded, stats.frames_analysed), (0, 0), "{stats:?}");
    assert!(events.is_empty(), "published again: {events:#?}");
    drop(moto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_stream_gives_the_same_events_and_a_camera_killed_anywhere_repeats_them_with_their_ids() {
    let fragments = backlog();
    let last = fragments[11].number.clone();
    let server = KvsServer::start(fragments.clone(), vec![]).await;
    let moto = Moto::start();
    let (engine, mut camera, _worker) = engine_and_camera().await;
    camera.idle_end = IDLE_END;
    let mut runs = Vec::new();
    for table in ["first", "second"] {
        let checkpoints = checkpoint_table(&moto, table).await;
        let run = CameraRun::start(&server, &engine, &camera, StartSelector::Earliest, Some(checkpoints)).await;
        until_the_end(&run, &last, 2).await;
        runs.push(run.stop().await.1);
    }
    assert!(runs[0].len() >= 4, "new and end of both plates: {:#?}", runs[0]);
    assert_eq!(runs[0], runs[1], "analysed twice from an empty checkpoint: the same events, ids included");

    let expected = by_id(&runs[0]);
    // Killed (no drain, no last checkpoint) at points across the backlog and after the idle end,
    // then restarted on its checkpoint: the same ids.
    for (point, table) in [(2, "killed-3"), (8, "killed-9"), (12, "killed-after-idle-end")] {
        let checkpoints = checkpoint_table(&moto, table).await;
        let run = CameraRun::start(&server, &engine, &camera, StartSelector::Earliest, Some(checkpoints.clone())).await;
        if point < 12 {
            let at = fragments[point].number.clone();
            run.wait_until("the kill point is analysed", |r| r.processed() >= Some(at.clone())).await;
        } else {
            until_the_end(&run, &last, 2).await;
            let deadline = Instant::now() + Duration::from_secs(60);
            while checkpoints.read().await.expect("read").is_none_or(|c| c.revision == 0) {
                assert!(Instant::now() < deadline, "the idle end was never checkpointed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let before = run.events();
        run.kill();
        let restarted = CameraRun::start(&server, &engine, &camera, StartSelector::Earliest, Some(checkpoints)).await;
        if point < 12 {
            until_the_end(&restarted, &last, 2).await;
        } else {
            tokio::time::sleep(IDLE_END * 2 + Duration::from_secs(1)).await;
        }
        let after = restarted.stop().await.1;
        if point == 12 {
            assert!(after.is_empty(), "killed after the idle end: nothing more to publish, got {after:#?}");
        }
        assert_eq!(
            merged(&before, &after),
            expected,
            "killed at {table}: deduplicated by event_id, the uninterrupted run's events"
        );
    }

    // A sink that is down holds the checkpoint back: killed with nothing delivered, the restart
    // reads the video of every undelivered event again.
    let checkpoints = checkpoint_table(&moto, "undelivered").await;
    let run = CameraRun::start(&server, &engine, &camera, StartSelector::Earliest, Some(checkpoints.clone())).await;
    run.delivery.pause();
    let ninth = fragments[8].number.clone();
    run.wait_until("fragment 9 is analysed", |r| r.processed() >= Some(ninth.clone())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = run.events();
    let first = before.iter().filter_map(|e| e.fragment_number.clone()).min().expect("events before fragment 9");
    let held = checkpoints.read().await.expect("read").map(|c| c.fragment.to_string());
    assert!(
        held.as_deref().is_none_or(|h| h < first.as_str()),
        "checkpoint {held:?} passed the undelivered event of {first}"
    );
    run.kill();
    let restarted = CameraRun::start(&server, &engine, &camera, StartSelector::Earliest, Some(checkpoints)).await;
    until_the_end(&restarted, &last, 2).await;
    let after = restarted.stop().await.1;
    assert_eq!(
        by_id(&after).keys().filter(|id| by_id(&before).contains_key(*id)).count(),
        before.len(),
        "every undelivered event again"
    );
    assert_eq!(merged(&before, &after), expected);
    drop(moto);
}

/// Two runs' events merged by `event_id`; an event published twice is the same event.
fn merged(before: &[Event], after: &[Event]) -> BTreeMap<String, Event> {
    let mut merged = by_id(before);
    for e in after {
        if let Some(earlier) = merged.get(&e.event_id) {
            assert_eq!(earlier, e, "an event published again is the same event");
        }
        merged.insert(e.event_id.clone(), e.clone());
    }
    merged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_past_skip_after_jumps_to_the_newest_key_frame() {
    // Ten minutes behind by the service's word, except the newest fragment.
    let fragments = capture(
        VIDEO,
        &Stamps { producer_start_ms: now_ms() - 600_000, behind_ms: |i| if i < 11 { 600_000 } else { 300 } },
    );
    let last = fragments[11].number.clone();
    let server = KvsServer::start(fragments.clone(), vec![]).await;
    let (engine, mut camera, _worker) = engine_and_camera().await;
    camera.catch_up = CatchUp { max_lag: Duration::from_secs(5), skip_after: Duration::from_secs(60) };
    // Every sampled frame counts here: motion gating would decide by the picture.
    camera.motion = kvs_infer::config::motion::MotionSettings::off();
    let run = CameraRun::start(&server, &engine, &camera, StartSelector::Earliest, None).await;
    // The first fragment (read before its lag was known) and the newest one: 5 frames each.
    run.wait_until("the newest fragment is analysed", |r| {
        r.processed().as_deref() == Some(last.as_str()) && r.progress.frames_done() >= 10
    })
    .await;
    let (stats, _) = run.stop().await;

    let calls = server.calls();
    assert_eq!(calls[0].selector["StartSelectorType"], "EARLIEST");
    let now = calls
        .iter()
        .find(|c| c.selector["StartSelectorType"] == "NOW")
        .unwrap_or_else(|| panic!("no NOW call: {calls:#?}"));
    assert_eq!(now.first, Some(11), "the skip starts again at the newest key frame");
    assert!(stats.frames_skipped > 0, "{stats:?}");
    assert_eq!(stats.frames_analysed, 10, "{stats:?}");
    assert_eq!(stats.frames_dropped, 0, "{stats:?}");
}
