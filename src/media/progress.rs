//! Fragment completion, shared by the three parties of a KVS camera: the frame stream reports
//! fragments it has read completely (the source reconnects after the newest) and every sampled
//! frame it hands on, the camera reports each frame it is done with (analysed, or dropped by the
//! live hand-off) with the analysis state after it and the receipt of its events, and the
//! checkpoint writer takes the newest fragment whose frames are all done *and* whose events the
//! sinks have all delivered, with the state it left the analysis in.
//!
//! Completion is counted, not inferred from what comes next: fragment N is done once as many
//! frames are done as had been handed on when N was read completely. So the last fragment of a
//! stream is done as soon as its last frame is analysed, with no later frame needed, and a frame
//! still queued at shutdown keeps its fragment (and the checkpoint) back.
//!
//! A **receipt** is the outbox sequence number of the newest event the camera had emitted (0:
//! none); the sinks' delivered watermark (the lowest sequence every sink acknowledged) says
//! which receipts are safe. A checkpoint that passed an undelivered event would lose it with the
//! instance's disk, so a done fragment waits in [`CheckpointFeed`] until its receipt is
//! delivered. A **revision** counts the changes of the analysis state after a fragment's last
//! frame (tracks ended by an idle stream): the checkpoint of the same fragment is written again,
//! so a restart does not end those tracks a second time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::FragmentMeta;

/// Done fragments waiting for their events' delivery, at most: a longer sink outage keeps the
/// newest ones (the checkpoint then waits for a later fragment, which is safe).
const WAITING_MAX: usize = 512;

/// A fragment whose sampled frames were all analysed (or dropped by policy).
#[derive(Debug, Clone)]
pub struct Processed {
    pub fragment: Arc<FragmentMeta>,
    /// The camera's analysis state right after the fragment's last frame (opaque here: the
    /// pipeline writes and reads it), so a restart after this fragment goes on from it.
    pub state: Option<Arc<str>>,
    /// The receipt of the newest event emitted up to this state: the checkpoint may hold it once
    /// every sink has delivered up to here.
    pub receipt: u64,
    /// 0 for the state after the fragment's last frame; one more for each later change.
    pub revision: u32,
}

impl Processed {
    /// Where a checkpoint is: the fragment and the revision of the state after it.
    pub fn position(&self) -> (Option<&crate::media::FragmentNumber>, u32) {
        (self.fragment.fragment_number.as_ref(), self.revision)
    }
}

#[derive(Debug, Default)]
struct Ledger {
    /// Sampled frames handed on to the analysis so far.
    handed: u64,
    /// Of those, frames analysed or dropped.
    done: u64,
    /// The analysis state after the last analysed frame.
    state: Option<Arc<str>>,
    /// The newest receipt reported.
    receipt: u64,
    /// Fragments read completely, each with `handed` at that moment, not yet done. Bounded by
    /// the hand-off: the decode thread cannot be more than a queue's worth of frames ahead.
    completed: VecDeque<(Arc<FragmentMeta>, u64)>,
    /// The newest done fragment (or the checkpoint resumed from), for revisions.
    last: Option<Processed>,
    /// `handed` when `last` was read completely: frames handed since belong to a fragment not
    /// yet complete (a live stream's newest), which a restart reads again.
    last_mark: u64,
}

/// Fragment completion, shared by the decode thread, the analysis loop and the KVS source.
pub struct FragmentProgress {
    demuxed: watch::Sender<Option<Arc<FragmentMeta>>>,
    processed: watch::Sender<Option<Processed>>,
    ledger: Mutex<Ledger>,
    /// Done fragments the checkpoint writer has not taken.
    waiting: Arc<Mutex<VecDeque<Processed>>>,
    /// The camera asks its source to jump to the newest key frame.
    skip: tokio::sync::Notify,
    /// Documents (fragments) read completely, numbered or not: the source's sign of progress.
    read: std::sync::atomic::AtomicU64,
}

impl Default for FragmentProgress {
    fn default() -> Self {
        Self {
            demuxed: watch::Sender::new(None),
            processed: watch::Sender::new(None),
            ledger: Mutex::default(),
            waiting: Arc::default(),
            skip: tokio::sync::Notify::new(),
            read: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FragmentProgress {
    /// A camera resumed from a checkpoint: the fragment and revision it holds, so a change of
    /// state before any new fragment (an idle end) is checkpointed as the next revision.
    pub fn resumed(fragment: Arc<FragmentMeta>, revision: u32) -> Self {
        let progress = Self::default();
        lock(&progress.ledger).last = Some(Processed { fragment, state: None, receipt: 0, revision });
        progress
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }

    /// Decode thread: a sampled frame goes to the analysis.
    pub fn frame_handed(&self) {
        self.ledger().handed += 1;
    }

    /// A handed frame is finished with: analysed (with the analysis `state` after it and the
    /// `receipt` of the events emitted so far), or dropped by the live hand-off (`None`, 0: the
    /// state is unchanged).
    pub fn frame_done(&self, state: Option<Arc<str>>, receipt: u64) {
        let mut ledger = self.ledger();
        ledger.done += 1;
        ledger.receipt = ledger.receipt.max(receipt);
        if state.is_some() {
            ledger.state = state;
        }
        self.release(ledger);
    }

    /// The analysis state changed with no frame (open tracks ended on an idle stream). When every
    /// frame handed so far belongs to the newest done fragment, that fragment is published again,
    /// one revision on. Otherwise (frames in flight, or analysed frames of a fragment not yet read
    /// completely, which a restart reads again from the checkpoint) the change rides with the
    /// fragment those frames complete: a checkpoint never pairs a fragment with a state that
    /// includes frames after it.
    pub fn state_changed(&self, state: Arc<str>, receipt: u64) {
        let mut ledger = self.ledger();
        ledger.receipt = ledger.receipt.max(receipt);
        ledger.state = Some(state.clone());
        // `last_mark <= done <= handed` always holds (a fragment is released once done reaches its
        // mark), so this one test covers frames in flight and fragments not yet released too.
        if ledger.handed != ledger.last_mark {
            return;
        }
        let Some(last) = ledger.last.as_ref() else { return };
        let next = Processed {
            fragment: last.fragment.clone(),
            state: Some(state),
            receipt: ledger.receipt,
            revision: last.revision + 1,
        };
        ledger.last = Some(next.clone());
        drop(ledger);
        self.publish(next);
    }

    /// Decode thread: every frame of this fragment has been read, decoded and handed on.
    pub fn fragment_demuxed(&self, meta: Arc<FragmentMeta>) {
        self.read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if meta.fragment_number.is_none() {
            return;
        }
        let mut ledger = self.ledger();
        let mark = ledger.handed;
        ledger.completed.push_back((meta.clone(), mark));
        self.demuxed.send_replace(Some(meta));
        self.release(ledger);
    }

    /// Publishes the newest completed fragment whose frames are all done.
    fn release(&self, mut ledger: std::sync::MutexGuard<'_, Ledger>) {
        let mut newest = None;
        while ledger.completed.front().is_some_and(|(_, mark)| *mark <= ledger.done) {
            newest = ledger.completed.pop_front();
        }
        let Some((fragment, mark)) = newest else { return };
        // Frames of later fragments are handed only after this one was read completely, so the
        // count reaches `mark` exactly here and the stored state is the one after its last frame.
        let state = (mark == ledger.done).then(|| ledger.state.clone()).flatten();
        let done = Processed { fragment, state, receipt: ledger.receipt, revision: 0 };
        ledger.last = Some(done.clone());
        ledger.last_mark = mark;
        drop(ledger);
        self.publish(done);
    }

    fn publish(&self, done: Processed) {
        let mut waiting = lock(&self.waiting);
        if waiting.len() >= WAITING_MAX {
            waiting.pop_front();
        }
        waiting.push_back(done.clone());
        drop(waiting);
        self.processed.send_replace(Some(done));
    }

    /// Fragments read completely so far (a GetMedia session that adds none makes no progress).
    pub fn fragments_read(&self) -> u64 {
        self.read.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sampled frames finished with so far (analysed or dropped).
    pub fn frames_done(&self) -> u64 {
        self.ledger().done
    }

    /// The newest fragment read completely (the KVS source resumes after it).
    pub fn last_demuxed(&self) -> Option<Arc<FragmentMeta>> {
        self.demuxed.borrow().clone()
    }

    /// The newest fully analysed fragment (delivered or not).
    pub fn last_processed(&self) -> Option<Processed> {
        self.processed.borrow().clone()
    }

    /// Decode thread: the camera is too far behind; the source should start again at the newest
    /// key frame.
    pub fn request_skip(&self) {
        self.skip.notify_one();
    }

    /// Source: resolves once a skip is asked for (a request made while nobody waits is kept).
    pub async fn skip_requested(&self) {
        self.skip.notified().await;
    }

    /// What the checkpoint writer follows. It outlives the progress: once the camera has let go
    /// of it, the writer still checkpoints what the sinks deliver after.
    pub fn checkpoint_feed(&self) -> CheckpointFeed {
        CheckpointFeed { waiting: self.waiting.clone(), changed: self.processed.subscribe() }
    }
}

/// The checkpoint writer's end: done fragments, oldest first, until delivered.
pub struct CheckpointFeed {
    waiting: Arc<Mutex<VecDeque<Processed>>>,
    changed: watch::Receiver<Option<Processed>>,
}

impl CheckpointFeed {
    /// Resolves when a fragment is done; `false` once the camera let go of its progress (no
    /// fragment will be done again).
    pub async fn changed(&mut self) -> bool {
        self.changed.changed().await.is_ok()
    }

    /// The newest done fragment whose receipt is at most `delivered`, and every older one taken
    /// with it.
    pub fn take_delivered(&self, delivered: u64) -> Option<Processed> {
        let mut waiting = lock(&self.waiting);
        let mut newest = None;
        while waiting.front().is_some_and(|p| p.receipt <= delivered) {
            newest = waiting.pop_front();
        }
        newest
    }

    /// The newest done fragment (delivered or not).
    pub fn newest(&self) -> Option<Processed> {
        self.changed.borrow().clone()
    }

    /// The oldest done fragment still waiting for its events' delivery.
    pub fn oldest_waiting(&self) -> Option<Processed> {
        lock(&self.waiting).front().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::FragmentNumber;

    fn meta(n: &str) -> Arc<FragmentMeta> {
        Arc::new(FragmentMeta { fragment_number: FragmentNumber::parse(n), ..FragmentMeta::default() })
    }

    fn processed(p: &FragmentProgress) -> (Option<FragmentNumber>, Option<String>) {
        p.last_processed()
            .map(|d| (d.fragment.fragment_number.clone(), d.state.as_deref().map(str::to_owned)))
            .unwrap_or_default()
    }

    #[test]
    fn a_fragment_is_processed_once_its_last_frame_is_done_with_the_state_after_it() {
        let p = FragmentProgress::default();
        p.frame_handed();
        p.frame_handed();
        p.fragment_demuxed(meta("10"));
        assert_eq!(p.last_demuxed().and_then(|m| m.fragment_number.clone()), FragmentNumber::parse("10"));
        p.frame_done(Some("after 1".into()), 0);
        assert_eq!(processed(&p), (None, None), "fragment 10 still has a frame in analysis");
        p.frame_handed();
        p.frame_done(Some("after 2".into()), 0);
        assert_eq!(processed(&p), (FragmentNumber::parse("10"), Some("after 2".into())));
        p.fragment_demuxed(meta("20"));
        assert_eq!(processed(&p).0, FragmentNumber::parse("10"), "fragment 20's frame is still queued");
        p.frame_done(Some("after 3".into()), 0);
        assert_eq!(processed(&p), (FragmentNumber::parse("20"), Some("after 3".into())), "no later frame needed");
    }

    #[test]
    fn dropped_frames_count_as_done_and_keep_the_state() {
        let p = FragmentProgress::default();
        p.frame_handed();
        p.frame_done(Some("s1".into()), 0);
        p.frame_handed();
        p.frame_handed();
        p.fragment_demuxed(meta("7"));
        p.frame_done(None, 0);
        p.frame_done(None, 0);
        assert_eq!(processed(&p), (FragmentNumber::parse("7"), Some("s1".into())));
        // A fragment without sampled frames is done at once.
        p.fragment_demuxed(meta("8"));
        assert_eq!(processed(&p), (FragmentNumber::parse("8"), Some("s1".into())));
    }

    fn taken(feed: &CheckpointFeed, delivered: u64) -> Option<(String, u32, Option<String>)> {
        feed.take_delivered(delivered).map(|p| {
            let number = p.fragment.fragment_number.as_ref().map(ToString::to_string).unwrap_or_default();
            (number, p.revision, p.state.as_deref().map(str::to_owned))
        })
    }

    #[test]
    fn a_done_fragment_waits_until_its_events_are_delivered() {
        let p = FragmentProgress::default();
        let feed = p.checkpoint_feed();
        p.frame_handed();
        p.fragment_demuxed(meta("10"));
        p.frame_done(Some("a".into()), 3);
        p.frame_handed();
        p.fragment_demuxed(meta("20"));
        p.frame_done(Some("b".into()), 5);
        p.frame_handed();
        p.fragment_demuxed(meta("30"));
        // No event in this frame: its receipt is still the newest event before it.
        p.frame_done(Some("c".into()), 0);
        assert_eq!(processed(&p).0, FragmentNumber::parse("30"), "analysed, delivered or not");
        assert_eq!(taken(&feed, 2), None, "event 3 is not delivered");
        assert_eq!(feed.oldest_waiting().map(|w| w.receipt), Some(3));
        assert_eq!(taken(&feed, 4), Some(("10".into(), 0, Some("a".into()))));
        assert_eq!(taken(&feed, 5), Some(("30".into(), 0, Some("c".into()))), "the newest delivered, 20 with it");
        assert!(feed.oldest_waiting().is_none());
    }

    #[test]
    fn a_state_change_without_frames_is_the_next_revision_of_the_last_fragment() {
        let p = FragmentProgress::default();
        let feed = p.checkpoint_feed();
        p.state_changed("before any fragment".into(), 1);
        assert_eq!(taken(&feed, u64::MAX), None, "nothing to checkpoint it with");
        p.frame_handed();
        p.fragment_demuxed(meta("10"));
        p.frame_done(Some("tracks".into()), 1);
        p.state_changed("tracks ended".into(), 2);
        assert_eq!(taken(&feed, 1), Some(("10".into(), 0, Some("tracks".into()))));
        assert_eq!(taken(&feed, 2), Some(("10".into(), 1, Some("tracks ended".into()))));
        // With a frame in flight the change rides with its fragment.
        p.frame_handed();
        p.state_changed("ended again".into(), 2);
        assert_eq!(taken(&feed, u64::MAX), None);
        p.fragment_demuxed(meta("20"));
        p.frame_done(None, 0);
        assert_eq!(taken(&feed, u64::MAX), Some(("20".into(), 0, Some("ended again".into()))));
    }

    #[test]
    fn a_resumed_camera_revises_the_checkpoint_it_resumed_from() {
        let p = FragmentProgress::resumed(meta("10"), 1);
        let feed = p.checkpoint_feed();
        p.state_changed("tracks ended".into(), 0);
        assert_eq!(taken(&feed, 0), Some(("10".into(), 2, Some("tracks ended".into()))));
    }

    #[tokio::test]
    async fn the_feed_outlives_the_progress_and_then_says_so() {
        let p = FragmentProgress::default();
        let mut feed = p.checkpoint_feed();
        p.frame_handed();
        p.fragment_demuxed(meta("10"));
        p.frame_done(Some("a".into()), 7);
        drop(p);
        assert!(feed.changed().await, "the last change is still seen");
        assert!(!feed.changed().await, "then the camera is gone");
        assert_eq!(taken(&feed, 7), Some(("10".into(), 0, Some("a".into()))), "what it left waits for delivery");
    }

    #[test]
    fn an_idle_end_after_frames_of_an_incomplete_fragment_waits_for_that_fragment() {
        // A live stream's newest fragment is complete only when the next starts: its frames are
        // analysed, the stream goes quiet, the tracks end. Fragment 10 must not be checkpointed
        // with that state (a restart after 10 reads fragment 20 again).
        let p = FragmentProgress::default();
        let feed = p.checkpoint_feed();
        p.frame_handed();
        p.fragment_demuxed(meta("10"));
        p.frame_done(Some("tracks".into()), 1);
        assert_eq!(taken(&feed, u64::MAX), Some(("10".into(), 0, Some("tracks".into()))));
        p.frame_handed();
        p.frame_done(Some("seen in 20".into()), 2);
        p.state_changed("ended".into(), 3);
        assert_eq!(taken(&feed, u64::MAX), None, "fragment 20 is not complete");
        p.fragment_demuxed(meta("20"));
        assert_eq!(taken(&feed, u64::MAX), Some(("20".into(), 0, Some("ended".into()))), "it rides with 20");
    }
}
