//! The lease loop: every `lease_duration / 3` this task bumps its heartbeat, renews the leases of
//! the cameras it runs, reads the table and takes what the balancing plan says, starting and
//! stopping cameras to match.
//!
//! - A renewal refused (another task took the lease) stops the camera at once.
//! - A renewal that cannot be made (DynamoDB unreachable) stops the camera once the last good
//!   renewal is older than `lease_duration - period`: by this task's clock, before any other task
//!   can see the lease as expired, so two tasks never analyse one camera at the same time.
//! - At shutdown the cameras drain (their last checkpoint written) and only then are their
//!   leases released, so a peer or a replacement takes them at its next round.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::balance::{self, Observer, Reason, Slot, View};
use super::lease::{Lease, LeaseTable};
use crate::config::{CameraSpec, FleetConfig};
use crate::health::{Component, Health};
use crate::metrics;
use crate::pipeline::supervisor::{CameraControl, Supervisor};
use crate::source::checkpoint::Fence;

/// A camera this task runs under a lease.
struct Owned {
    lease: Lease,
    renewed: Instant,
    stop: CancellationToken,
    task: JoinHandle<()>,
    /// Set once the camera is being stopped here, and why.
    leaving: Option<Lost>,
}

/// How often a draining task looks for cameras that have stopped.
const RELEASE_POLL: Duration = Duration::from_millis(100);

/// What the lease loop needs.
pub struct Fleet {
    pub config: FleetConfig,
    pub table: Arc<LeaseTable>,
    pub cameras: Vec<CameraSpec>,
    pub supervisor: Supervisor,
    pub health: Health,
    /// Shutdown's intake: stop taking, drain, release.
    pub intake: CancellationToken,
    /// Each running camera's last renewal, watched apart from the loop (see [`watch_fences`]).
    pub fences: Fences,
    /// When the scaling signal was last printed.
    pub emf_at: Mutex<Option<Instant>>,
}

/// The scaling signal's period (CloudWatch's standard resolution).
const EMF_INTERVAL: Duration = Duration::from_secs(60);

/// When each running camera's lease was last renewed, and how to stop it.
#[derive(Clone, Default)]
pub struct Fences(Arc<Mutex<HashMap<String, (Instant, CancellationToken)>>>);

impl Fences {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, CancellationToken)>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, camera: &str, renewed: Instant, stop: CancellationToken) {
        self.lock().insert(camera.to_owned(), (renewed, stop));
    }

    fn renewed(&self, camera: &str, at: Instant) {
        if let Some(entry) = self.lock().get_mut(camera) {
            entry.0 = at;
        }
    }

    fn remove(&self, camera: &str) {
        self.lock().remove(camera);
    }
}

/// How often the fences are checked.
const FENCE_CHECK: Duration = Duration::from_millis(100);

/// Stops every camera whose lease was last renewed `margin` ago, on this task's clock, however
/// long the lease loop's calls take: DynamoDB hanging cannot keep a camera running past the
/// moment another task may take it.
async fn watch_fences(fences: Fences, margin: Duration, done: CancellationToken) {
    while !done.is_cancelled() {
        for (camera, (renewed, stop)) in fences.lock().iter() {
            if renewed.elapsed() >= margin && !stop.is_cancelled() {
                warn!(camera, since = ?renewed.elapsed(), "fleet: lease not renewed in time; stopping the camera before it can expire");
                stop.cancel();
            }
        }
        tokio::select! {
            () = tokio::time::sleep(FENCE_CHECK) => {}
            () = done.cancelled() => {}
        }
    }
}

/// Why a camera was given up (`fleet_lease_lost_total{reason}`).
#[derive(Debug, Clone, Copy)]
enum Lost {
    /// Another task holds it now.
    Taken,
    /// It could not be renewed in time.
    Unrenewed,
    /// A task below its fair share claimed it.
    HandedOver,
}

impl Lost {
    fn as_str(self) -> &'static str {
        match self {
            Lost::Taken => "taken",
            Lost::Unrenewed => "unrenewed",
            Lost::HandedOver => "handed_over",
        }
    }
}

impl Fleet {
    fn period(&self) -> Duration {
        self.config.lease_duration / 3
    }

    /// Runs until shutdown, then drains this task's cameras and releases their leases.
    pub async fn run(self) {
        let mut observer = Observer::new(self.table.me(), self.config.lease_duration);
        let mut owned: BTreeMap<String, Owned> = BTreeMap::new();
        let mut live = BTreeSet::new();
        info!(task = self.table.me(), table = self.table.table(), period = ?self.period(), "fleet: lease loop started");
        let fence_done = CancellationToken::new();
        let margin = self.config.lease_duration.saturating_sub(self.period());
        let fence = tokio::spawn(watch_fences(self.fences.clone(), margin, fence_done.clone()));
        loop {
            self.round(&mut observer, &mut owned, &mut live).await;
            tokio::select! {
                () = tokio::time::sleep(self.period()) => {}
                () = self.intake.cancelled() => break,
            }
        }
        self.release_all(owned).await;
        fence_done.cancel();
        let _ = fence.await;
    }

    async fn round(&self, observer: &mut Observer, owned: &mut BTreeMap<String, Owned>, live: &mut BTreeSet<String>) {
        // A table that does not answer the heartbeat will not answer the rest: say so at once and
        // keep the round short (the fence watcher stops the cameras in time).
        let scanned = match self.table.heartbeat().await {
            Ok(()) => {
                self.renew(owned, live).await;
                self.table.scan().await
            }
            Err(e) => Err(e),
        };
        let scanned = match scanned {
            Ok(items) => items,
            Err(e) => {
                let reason = kvs_infer_common::error_chain(&e);
                warn!(error = %reason, "fleet: the lease table does not answer; cameras stop before their leases run out");
                self.health.set_degraded(&Component::Fleet, format!("lease table unreachable: {reason}"));
                self.forget_stopped(owned).await;
                return;
            }
        };
        self.health.clear_degraded(&Component::Fleet);
        let ids: Vec<String> = self.cameras.iter().map(|c| c.id.0.clone()).collect();
        let view = observer.observe(&ids, &scanned, Instant::now());
        for take in balance::plan(self.table.me(), &view, self.config.max_cameras_per_task) {
            if owned.contains_key(&take.camera) {
                continue;
            }
            if let (Reason::Stolen, Some(Slot::Held { lease, .. })) = (take.reason, view.cameras.get(&take.camera)) {
                match self.table.claim(lease).await {
                    Ok(true) => info!(
                        camera = take.camera,
                        from = lease.owner.as_deref(),
                        "fleet: claimed to balance the fleet"
                    ),
                    Ok(false) => {}
                    Err(e) => {
                        warn!(camera = take.camera, error = %kvs_infer_common::error_chain(&e), "fleet: cannot claim a lease")
                    }
                }
                continue;
            }
            match self.table.take(&take.camera, take.seen.as_ref()).await {
                Ok(Some(lease)) => self.start(lease, take.reason, &view, owned),
                Ok(None) => info!(
                    camera = take.camera,
                    reason = take.reason.as_str(),
                    "fleet: another task took the lease first"
                ),
                Err(e) => {
                    warn!(camera = take.camera, error = %kvs_infer_common::error_chain(&e), "fleet: cannot take a lease")
                }
            }
        }
        self.report(&view, owned);
        *live = view.live_tasks;
    }

    /// Renews every lease held (a camera that is stopping keeps its lease until it has
    /// stopped, so nobody else starts it meanwhile); stops the cameras whose lease was taken or
    /// is running out and those a live task claimed, without waiting for them; lets go of each
    /// once it has stopped (releasing a claimed lease to its claimant).
    async fn renew(&self, owned: &mut BTreeMap<String, Owned>, live: &BTreeSet<String>) {
        let margin = self.config.lease_duration.saturating_sub(self.period());
        // All at once: a round lasts one call, not one call per camera.
        let mut calls = tokio::task::JoinSet::new();
        for (camera, o) in owned.iter().filter(|(_, o)| !matches!(o.leaving, Some(Lost::Taken))) {
            let (table, camera, lease) = (self.table.clone(), camera.clone(), o.lease.clone());
            calls.spawn(async move { (camera, table.renew(&lease).await) });
        }
        for (camera, renewed) in calls.join_all().await {
            let Some(o) = owned.get_mut(&camera) else { continue };
            let camera = camera.as_str();
            let leaving = match renewed {
                Ok(Some(lease)) => {
                    let claimed = lease.claim.as_ref().is_some_and(|c| c != self.table.me() && live.contains(c));
                    o.lease = lease;
                    o.renewed = Instant::now();
                    self.fences.renewed(camera, o.renewed);
                    claimed.then_some(Lost::HandedOver)
                }
                Ok(None) => Some(Lost::Taken),
                Err(e) if o.renewed.elapsed() >= margin => {
                    warn!(camera, error = %kvs_infer_common::error_chain(&e), "fleet: lease not renewed in time");
                    Some(Lost::Unrenewed)
                }
                Err(e) => {
                    warn!(camera, error = %kvs_infer_common::error_chain(&e), "fleet: renewal failed; retrying next round");
                    None
                }
            };
            if let Some(why) = leaving
                && o.leaving.is_none()
            {
                info!(camera, reason = why.as_str(), to = o.lease.claim.as_deref(), "fleet: stopping the camera here");
                o.leaving = Some(why);
                o.stop.cancel();
            }
        }
        self.forget_stopped(owned).await;
    }

    /// Lets go of the cameras that were being stopped and have stopped (releasing a claimed
    /// lease to its claimant); a camera the fence watcher stopped counts as unrenewed.
    async fn forget_stopped(&self, owned: &mut BTreeMap<String, Owned>) {
        for o in owned.values_mut().filter(|o| o.leaving.is_none() && o.stop.is_cancelled()) {
            o.leaving = Some(Lost::Unrenewed);
        }
        let stopped: Vec<String> =
            owned.iter().filter(|(_, o)| o.leaving.is_some() && o.task.is_finished()).map(|(c, _)| c.clone()).collect();
        for camera in stopped {
            let Some(o) = owned.remove(&camera) else { continue };
            self.fences.remove(&camera);
            let why = o.leaving.unwrap_or(Lost::Taken);
            metrics::count_fleet_lease_lost(why.as_str());
            info!(camera, reason = why.as_str(), "fleet: camera stopped here");
            if matches!(why, Lost::HandedOver)
                && let Err(e) = self.table.release(&o.lease).await
            {
                warn!(camera, error = %kvs_infer_common::error_chain(&e), "fleet: cannot release a claimed lease; it expires instead");
            }
        }
    }

    fn start(&self, lease: Lease, reason: Reason, view: &View, owned: &mut BTreeMap<String, Owned>) {
        let Some(camera) = self.cameras.iter().find(|c| c.id.0 == lease.key) else { return };
        let from = match view.cameras.get(&lease.key) {
            Some(Slot::Held { lease: l, .. }) => l.owner.clone(),
            _ => None,
        };
        info!(
            camera = lease.key,
            reason = reason.as_str(),
            from = from.as_deref(),
            "fleet: lease taken; starting the camera"
        );
        metrics::count_fleet_lease_acquired(reason.as_str());
        let stop = self.intake.child_token();
        let fence = Fence {
            lease_table: self.table.table().to_owned(),
            camera: lease.key.clone(),
            owner: self.table.me().to_owned(),
        };
        let task =
            self.supervisor.start_camera(camera.clone(), CameraControl { stop: stop.clone(), fence: Some(fence) });
        self.fences.insert(&lease.key, Instant::now(), stop.clone());
        owned.insert(lease.key.clone(), Owned { lease, renewed: Instant::now(), stop, task, leaving: None });
    }

    fn report(&self, view: &View, owned: &BTreeMap<String, Owned>) {
        metrics::set_fleet(owned.len(), view.live_tasks.len());
        let mut emitted = self.emf_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if emitted.is_none_or(|at| at.elapsed() >= EMF_INTERVAL) {
            *emitted = Some(Instant::now());
            let c = &self.config;
            println!(
                "{}",
                super::emf::record(
                    &c.metrics_namespace,
                    &c.service_name,
                    self.table.me(),
                    (owned.len(), view.live_tasks.len()),
                    crate::metrics::signals()
                )
            );
        }
        drop(emitted);
        let names: Vec<&str> = owned.keys().map(String::as_str).collect();
        self.health.set_info(
            "fleet",
            format!(
                "task {}: cameras [{}]; {} live tasks, fair share {}",
                self.table.me(),
                names.join(", "),
                view.live_tasks.len(),
                view.fair_share(self.config.max_cameras_per_task)
            ),
        );
    }

    /// Shutdown: the cameras (children of the intake) are already stopping. Their leases are
    /// renewed while they drain, and each is released once its camera has stopped (its last
    /// checkpoint written), so a peer takes it at its next round.
    async fn release_all(&self, mut owned: BTreeMap<String, Owned>) {
        for o in owned.values() {
            o.stop.cancel();
        }
        while !owned.is_empty() {
            let stopped: Vec<String> =
                owned.iter().filter(|(_, o)| o.task.is_finished()).map(|(c, _)| c.clone()).collect();
            for camera in stopped {
                let Some(o) = owned.remove(&camera) else { continue };
                match self.table.release(&o.lease).await {
                    Ok(true) => info!(camera, "fleet: lease released"),
                    Ok(false) => info!(camera, "fleet: the lease had already moved on"),
                    Err(e) => {
                        warn!(camera, error = %kvs_infer_common::error_chain(&e), "fleet: cannot release the lease; it expires instead")
                    }
                }
            }
            for o in owned.values_mut().filter(|o| o.renewed.elapsed() >= self.period()) {
                if let Ok(Some(lease)) = self.table.renew(&o.lease).await {
                    o.lease = lease;
                    o.renewed = Instant::now();
                }
            }
            if !owned.is_empty() {
                tokio::time::sleep(RELEASE_POLL).await;
            }
        }
        metrics::set_fleet(0, 0);
    }
}
