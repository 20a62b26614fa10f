//! Fragment completion, shared by the three parties of a KVS camera: the frame stream reports
//! fragments it has read completely (the source reconnects after the newest) and every sampled
//! frame it hands on, the camera reports each frame it is done with (analysed, or dropped by the
//! live hand-off) with the analysis state after it, and the checkpoint writer follows the newest
//! fragment whose frames are all done, with the state it left the analysis in.
//!
//! Completion is counted, not inferred from what comes next: fragment N is done once as many
//! frames are done as had been handed on when N was read completely. So the last fragment of a
//! stream is done as soon as its last frame is analysed, with no later frame needed, and a frame
//! still queued at shutdown keeps its fragment (and the checkpoint) back.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::FragmentMeta;

/// A fragment whose sampled frames were all analysed (or dropped by policy).
#[derive(Debug, Clone)]
pub struct Processed {
    pub fragment: Arc<FragmentMeta>,
    /// The camera's analysis state right after the fragment's last frame (opaque here: the
    /// pipeline writes and reads it), so a restart after this fragment goes on from it.
    pub state: Option<Arc<str>>,
}

#[derive(Debug, Default)]
struct Ledger {
    /// Sampled frames handed on to the analysis so far.
    handed: u64,
    /// Of those, frames analysed or dropped.
    done: u64,
    /// The analysis state after the last analysed frame.
    state: Option<Arc<str>>,
    /// Fragments read completely, each with `handed` at that moment, not yet done. Bounded by
    /// the hand-off: the decode thread cannot be more than a queue's worth of frames ahead.
    completed: VecDeque<(Arc<FragmentMeta>, u64)>,
}

/// Fragment completion, shared by the decode thread, the analysis loop and the KVS source.
pub struct FragmentProgress {
    demuxed: watch::Sender<Option<Arc<FragmentMeta>>>,
    processed: watch::Sender<Option<Processed>>,
    ledger: Mutex<Ledger>,
    /// The camera asks its source to jump to the newest key frame.
    skip: tokio::sync::Notify,
}

impl Default for FragmentProgress {
    fn default() -> Self {
        Self {
            demuxed: watch::Sender::new(None),
            processed: watch::Sender::new(None),
            ledger: Mutex::default(),
            skip: tokio::sync::Notify::new(),
        }
    }
}

impl FragmentProgress {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Decode thread: a sampled frame goes to the analysis.
    pub fn frame_handed(&self) {
        self.ledger().handed += 1;
    }

    /// A handed frame is finished with: analysed (with the analysis `state` after it), or
    /// dropped by the live hand-off (`None`: the state is unchanged).
    pub fn frame_done(&self, state: Option<Arc<str>>) {
        let mut ledger = self.ledger();
        ledger.done += 1;
        if state.is_some() {
            ledger.state = state;
        }
        self.release(ledger);
    }

    /// Decode thread: every frame of this fragment has been read, decoded and handed on.
    pub fn fragment_demuxed(&self, meta: Arc<FragmentMeta>) {
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
        drop(ledger);
        self.processed.send_replace(Some(Processed { fragment, state }));
    }

    /// Sampled frames finished with so far (analysed or dropped).
    pub fn frames_done(&self) -> u64 {
        self.ledger().done
    }

    /// The newest fragment read completely (the KVS source resumes after it).
    pub fn last_demuxed(&self) -> Option<Arc<FragmentMeta>> {
        self.demuxed.borrow().clone()
    }

    /// The newest fully analysed fragment.
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

    /// Follows the newest fully analysed fragment (the checkpoint writer).
    pub fn subscribe_processed(&self) -> watch::Receiver<Option<Processed>> {
        self.processed.subscribe()
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
        p.frame_done(Some("after 1".into()));
        assert_eq!(processed(&p), (None, None), "fragment 10 still has a frame in analysis");
        p.frame_handed();
        p.frame_done(Some("after 2".into()));
        assert_eq!(processed(&p), (FragmentNumber::parse("10"), Some("after 2".into())));
        p.fragment_demuxed(meta("20"));
        assert_eq!(processed(&p).0, FragmentNumber::parse("10"), "fragment 20's frame is still queued");
        p.frame_done(Some("after 3".into()));
        assert_eq!(processed(&p), (FragmentNumber::parse("20"), Some("after 3".into())), "no later frame needed");
    }

    #[test]
    fn dropped_frames_count_as_done_and_keep_the_state() {
        let p = FragmentProgress::default();
        p.frame_handed();
        p.frame_done(Some("s1".into()));
        p.frame_handed();
        p.frame_handed();
        p.fragment_demuxed(meta("7"));
        p.frame_done(None);
        p.frame_done(None);
        assert_eq!(processed(&p), (FragmentNumber::parse("7"), Some("s1".into())));
        // A fragment without sampled frames is done at once.
        p.fragment_demuxed(meta("8"));
        assert_eq!(processed(&p), (FragmentNumber::parse("8"), Some("s1".into())));
    }
}
