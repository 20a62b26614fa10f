//! The fleet's lease table against DynamoDB (moto): conditional takes, renewals, steals and
//! releases decide every race for a camera, and task heartbeats count.

use kvs_infer::fleet::lease::{Lease, LeaseTable};

use crate::common::moto::{self, Moto};

async fn tables(moto: &Moto, tasks: &[&str]) -> Vec<LeaseTable> {
    let ddb = aws_sdk_dynamodb::Client::new(&moto.sdk().await);
    moto::create_table(&ddb, "leases", "camera").await;
    tasks.iter().map(|t| LeaseTable::new(ddb.clone(), "leases".into(), (*t).into())).collect()
}

fn item<'a>(items: &'a [Lease], key: &str) -> &'a Lease {
    items.iter().find(|l| l.key == key).unwrap_or_else(|| panic!("no {key} in {items:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_race_for_a_camera_has_one_winner() {
    let moto = Moto::start();
    let t = tables(&moto, &["a", "b"]).await;
    let (a, b) = (&t[0], &t[1]);

    let first = a.take("cam-0", None).await.expect("take").expect("free: a takes it");
    assert_eq!((first.owner.as_deref(), first.counter), (Some("a"), 1));
    assert_eq!(b.take("cam-0", None).await.expect("take"), None, "no longer never-written");

    let renewed = a.renew(&first).await.expect("renew").expect("still a's");
    assert_eq!(renewed.counter, 2);
    assert_eq!(a.renew(&first).await.expect("renew"), None, "a stale counter renews nothing");

    // b steals at the counter it saw; a learns it at its next renewal.
    let seen = item(&b.scan().await.expect("scan"), "cam-0").clone();
    let stolen = b.take("cam-0", Some(&seen)).await.expect("take").expect("b steals");
    assert_eq!((stolen.owner.as_deref(), stolen.counter), (Some("b"), 3));
    assert_eq!(a.renew(&renewed).await.expect("renew"), None, "a lost it");
    assert!(!a.release(&renewed).await.expect("release"), "and cannot release what it lost");

    assert!(b.release(&stolen).await.expect("release"));
    let released = item(&a.scan().await.expect("scan"), "cam-0").clone();
    assert_eq!((released.owner.as_deref(), released.counter), (None, 4), "free, counter moved");
    assert!(a.take("cam-0", Some(&released)).await.expect("take").is_some(), "a released lease is free to take");

    // A claim leaves the owner's renewal working and tells it who asks; the owner releases.
    let held = a.take("cam-1", None).await.expect("take").expect("a takes cam-1");
    let seen = item(&b.scan().await.expect("scan"), "cam-1").clone();
    assert!(b.claim(&seen).await.expect("claim"));
    assert!(!a.claim(&seen).await.expect("claim"), "an owner does not claim its own lease");
    let renewed = a.renew(&held).await.expect("renew").expect("a still holds it");
    assert_eq!(renewed.claim.as_deref(), Some("b"), "a sees b's claim");
    assert!(a.release(&renewed).await.expect("release"));
    let free = item(&b.scan().await.expect("scan"), "cam-1").clone();
    assert_eq!((free.owner.as_deref(), free.claim.as_deref()), (None, Some("b")));
    let taken = b.take("cam-1", Some(&free)).await.expect("take").expect("b takes what it claimed");
    assert_eq!(taken.claim, None, "the take clears the claim");

    a.heartbeat().await.expect("heartbeat");
    a.heartbeat().await.expect("heartbeat");
    let beat = item(&a.scan().await.expect("scan"), "#task:a").clone();
    assert_eq!((beat.task(), beat.counter), (Some("a"), 2));
    drop(moto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tasks_racing_for_a_free_camera_leave_exactly_one_owner() {
    let moto = Moto::start();
    let names: Vec<String> = (0..8).map(|i| format!("task-{i}")).collect();
    let t = tables(&moto, &names.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let t: Vec<std::sync::Arc<LeaseTable>> = t.into_iter().map(std::sync::Arc::new).collect();
    let races: Vec<_> = t
        .iter()
        .map(|lt| {
            let lt = lt.clone();
            tokio::spawn(async move { lt.take("cam-9", None).await.expect("take") })
        })
        .collect();
    let mut winners = Vec::new();
    for r in races {
        if let Some(l) = r.await.expect("join") {
            winners.push(l);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let stored = item(&t[0].scan().await.expect("scan"), "cam-9").clone();
    assert_eq!(stored.owner, winners[0].owner, "the table names the winner");
    drop(moto);
}
