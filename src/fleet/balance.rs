//! What a task sees in the lease table and which leases it should take: judged on the task's own
//! clock (a counter that has not moved for a lease duration has expired, whatever the clocks of
//! the other tasks say), balanced to a fair share of `ceil(cameras / live tasks)`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::lease::Lease;

/// One camera's lease, as this task sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// Nobody holds it: never written (`None`), or released.
    Free(Option<Lease>),
    /// Held by `lease.owner`; `expired` when its counter has not moved for a lease duration.
    Held { lease: Lease, expired: bool },
}

/// The fleet as one task sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    pub cameras: BTreeMap<String, Slot>,
    /// Tasks whose heartbeat moved within a lease duration (this one included).
    pub live_tasks: BTreeSet<String>,
}

impl View {
    /// The cameras `task` holds (unexpired).
    pub fn owned_by(&self, task: &str) -> Vec<&str> {
        self.cameras
            .iter()
            .filter_map(|(camera, slot)| match slot {
                Slot::Held { lease, expired: false } if lease.owner.as_deref() == Some(task) => Some(camera.as_str()),
                _ => None,
            })
            .collect()
    }

    /// `ceil(cameras / live tasks)`, capped by `max_per_task`.
    pub fn fair_share(&self, max_per_task: Option<usize>) -> usize {
        let share = self.cameras.len().div_ceil(self.live_tasks.len().max(1));
        max_per_task.map_or(share, |m| share.min(m))
    }
}

/// Remembers when each counter last moved, by this task's clock.
#[derive(Debug)]
pub struct Observer {
    me: String,
    lease_duration: Duration,
    moved: HashMap<String, (u64, Instant)>,
}

impl Observer {
    pub fn new(me: &str, lease_duration: Duration) -> Self {
        Self { me: me.to_owned(), lease_duration, moved: HashMap::new() }
    }

    /// The view of `cameras` from a scan of the table at `now`. An item seen for the first time
    /// counts as just moved: a task that starts waits a lease duration before it calls another's
    /// lease expired.
    pub fn observe(&mut self, cameras: &[String], items: &[Lease], now: Instant) -> View {
        let mut view = View::default();
        view.live_tasks.insert(self.me.clone());
        let mut by_key: HashMap<&str, &Lease> = HashMap::new();
        for item in items {
            let moved = self.moved.entry(item.key.clone()).or_insert((item.counter, now));
            if moved.0 != item.counter {
                *moved = (item.counter, now);
            }
            let fresh = now.saturating_duration_since(moved.1) < self.lease_duration;
            match item.task() {
                Some(task) if fresh => {
                    view.live_tasks.insert(task.to_owned());
                }
                Some(_) => {}
                None => {
                    by_key.insert(item.key.as_str(), item);
                }
            }
        }
        for camera in cameras {
            let slot = match by_key.get(camera.as_str()) {
                None => Slot::Free(None),
                Some(l) if l.owner.is_none() => Slot::Free(Some((*l).clone())),
                Some(l) => {
                    let since = self.moved.get(camera).map_or(now, |m| m.1);
                    Slot::Held {
                        lease: (*l).clone(),
                        expired: now.saturating_duration_since(since) >= self.lease_duration,
                    }
                }
            };
            view.cameras.insert(camera.clone(), slot);
        }
        view
    }
}

/// Why a lease is taken (`fleet_lease_acquired_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Free,
    Expired,
    Stolen,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Free => "free",
            Reason::Expired => "expired",
            Reason::Stolen => "stolen",
        }
    }
}

/// A lease to try to take: its camera, the item as seen (the write's condition) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Take {
    pub camera: String,
    pub seen: Option<Lease>,
    pub reason: Reason,
}

/// The leases `me` should try to take now: below its fair share, free ones first, then expired
/// ones, then at most one stolen from the most loaded task (only if that task is above the fair
/// share, so a balanced fleet stays still). A steal is a claim: the owner hands the camera over
/// at its next renewal and this task takes it free in a later round.
pub fn plan(me: &str, view: &View, max_per_task: Option<usize>) -> Vec<Take> {
    let fair = view.fair_share(max_per_task);
    // Cameras this task claimed and their owners have not handed over yet are on their way.
    let coming = view
        .cameras
        .values()
        .filter(|s| matches!(s, Slot::Held { lease, expired: false } if lease.claim.as_deref() == Some(me)))
        .count();
    let mut want = fair.saturating_sub(view.owned_by(me).len() + coming);
    let mut takes = Vec::new();
    for (reason, pick) in [(Reason::Free, 0), (Reason::Expired, 1)] {
        for (camera, slot) in &view.cameras {
            if want == 0 {
                return takes;
            }
            let seen = match (pick, slot) {
                (0, Slot::Free(seen)) => seen.clone(),
                (1, Slot::Held { lease, expired: true }) if lease.owner.as_deref() != Some(me) => Some(lease.clone()),
                _ => continue,
            };
            // A free lease this task had claimed is the end of a steal.
            let claimed = seen.as_ref().and_then(|l| l.claim.as_deref()) == Some(me);
            let reason = if claimed { Reason::Stolen } else { reason };
            takes.push(Take { camera: camera.clone(), seen, reason });
            want -= 1;
        }
    }
    if want > 0
        && let Some(steal) = steal_one(me, view, fair)
    {
        takes.push(steal);
    }
    takes
}

/// The first unclaimed camera of the live task holding the most, when it holds more than `fair`
/// (counting what it is handing over already, so two thieves do not empty it).
fn steal_one(me: &str, view: &View, fair: usize) -> Option<Take> {
    let (task, owned) = view
        .live_tasks
        .iter()
        .filter(|t| t.as_str() != me)
        .map(|t| (t, view.owned_by(t)))
        .max_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| b.0.cmp(a.0)))?;
    let claimed = |camera: &str| matches!(view.cameras.get(camera), Some(Slot::Held { lease, .. }) if lease.claim.as_ref().is_some_and(|c| view.live_tasks.contains(c)));
    let keeps = owned.iter().filter(|c| !claimed(c)).count();
    if keeps <= fair {
        return None;
    }
    let camera = owned.iter().find(|c| !claimed(c))?;
    let Some(Slot::Held { lease, .. }) = view.cameras.get(*camera) else { return None };
    tracing::debug!(from = %task, camera = %camera, "stealing a lease to balance the fleet");
    Some(Take { camera: (*camera).to_owned(), seen: Some(lease.clone()), reason: Reason::Stolen })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(20);

    fn lease(key: &str, owner: Option<&str>, counter: u64) -> Lease {
        Lease { key: key.into(), owner: owner.map(Into::into), counter, claim: None }
    }

    fn cams(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("cam-{i}")).collect()
    }

    fn taken(takes: &[Take]) -> Vec<(&str, Reason)> {
        takes.iter().map(|t| (t.camera.as_str(), t.reason)).collect()
    }

    #[test]
    fn a_lone_task_takes_every_free_camera() {
        let mut o = Observer::new("a", D);
        let view = o.observe(&cams(3), &[lease("cam-1", None, 4)], Instant::now());
        let takes = plan("a", &view, None);
        assert_eq!(taken(&takes), vec![("cam-0", Reason::Free), ("cam-1", Reason::Free), ("cam-2", Reason::Free)]);
        assert_eq!(takes[0].seen, None, "never written: the write needs the item absent");
        assert_eq!(takes[1].seen, Some(lease("cam-1", None, 4)), "released: the write needs its counter");
        assert_eq!(taken(&plan("a", &view, Some(2))).len(), 2, "max_cameras_per_task");
    }

    #[test]
    fn a_lease_expires_only_after_its_counter_stood_still_for_a_lease_duration_on_our_clock() {
        let t0 = Instant::now();
        let mut o = Observer::new("b", D);
        let items = |n| vec![lease("cam-0", Some("a"), n), lease("#task:a", Some("a"), n)];
        let view = o.observe(&cams(1), &items(7), t0);
        assert!(plan("b", &view, None).is_empty(), "a's lease is fresh");
        // Renewed at 15 s: the clock starts again.
        o.observe(&cams(1), &items(8), t0 + Duration::from_secs(15));
        let view = o.observe(&cams(1), &items(8), t0 + Duration::from_secs(30));
        assert!(plan("b", &view, None).is_empty(), "15 s since it moved");
        let view = o.observe(&cams(1), &items(8), t0 + Duration::from_secs(35));
        assert_eq!(view.live_tasks, BTreeSet::from(["b".to_owned()]), "a's heartbeat stopped too");
        let takes = plan("b", &view, None);
        assert_eq!(taken(&takes), vec![("cam-0", Reason::Expired)]);
        assert_eq!(takes[0].seen, Some(lease("cam-0", Some("a"), 8)));
    }

    #[test]
    fn a_new_task_steals_one_lease_per_round_from_the_most_loaded_and_a_balanced_fleet_stays_still() {
        let t0 = Instant::now();
        let mut o = Observer::new("c", D);
        let mut items: Vec<Lease> = (0..6).map(|i| lease(&format!("cam-{i}"), Some("a"), 1)).collect();
        items.push(lease("#task:a", Some("a"), 1));
        items.push(lease("#task:b", Some("b"), 1));
        items[4].owner = Some("b".into());
        items[5].owner = Some("b".into());
        let view = o.observe(&cams(6), &items, t0);
        assert_eq!(view.fair_share(None), 2, "6 cameras, 3 live tasks");
        // a holds 4 (over the share of 2), b holds 2: c steals one of a's, just one.
        assert_eq!(taken(&plan("c", &view, None)), vec![("cam-0", Reason::Stolen)]);
        // Balanced 2/2/2: nobody takes anything.
        items[0].owner = Some("c".into());
        items[1].owner = Some("c".into());
        let view = o.observe(&cams(6), &items, t0);
        for task in ["a", "b", "c"] {
            assert!(plan(task, &view, None).is_empty(), "{task} moves in a balanced fleet");
        }
        // Claims are pipelined: with cam-2 claimed by c and not handed over yet, c's next claim
        // is another camera, and it counts cam-2 as coming.
        let mut pending = items.clone();
        pending[0].owner = Some("a".into());
        pending[1].owner = Some("a".into());
        pending[2].claim = Some("c".into());
        let view = o.observe(&cams(6), &pending, t0);
        assert_eq!(taken(&plan("c", &view, None)), vec![("cam-0", Reason::Stolen)]);
        pending[0].claim = Some("c".into());
        let view = o.observe(&cams(6), &pending, t0);
        assert!(plan("c", &view, None).is_empty(), "two on their way: c's share is reached");
        // 7 cameras over 3 tasks (3/2/2): the share is 3 and no one steals.
        let mut seven = items.clone();
        seven.push(lease("cam-6", Some("a"), 1));
        let view = o.observe(&cams(7), &seven, t0);
        assert!(plan("b", &view, None).is_empty());
    }
}
