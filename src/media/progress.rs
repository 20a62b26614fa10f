//! Fragment completion, shared by the three parties of a KVS camera: the frame stream reports
//! fragments it has read completely (the source reconnects after the newest), the camera reports
//! the frames it takes for analysis (fragments before them are done), and the checkpoint writer
//! follows the newest fragment whose frames were all analysed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::{FragmentMeta, FragmentNumber};

/// Completed fragments not yet known to be analysed; older ones are folded into `processed`.
const COMPLETED_KEPT: usize = 256;

/// Fragment completion, shared by the decode thread, the analysis loop and the KVS source.
pub struct FragmentProgress {
    demuxed: watch::Sender<Option<Arc<FragmentMeta>>>,
    processed: watch::Sender<Option<Arc<FragmentMeta>>>,
    completed: Mutex<VecDeque<Arc<FragmentMeta>>>,
}

impl Default for FragmentProgress {
    fn default() -> Self {
        Self { demuxed: watch::Sender::new(None), processed: watch::Sender::new(None), completed: Mutex::default() }
    }
}

impl FragmentProgress {
    /// Decode thread: every frame of this fragment has been read, decoded and handed on.
    pub fn fragment_demuxed(&self, meta: Arc<FragmentMeta>) {
        if meta.fragment_number.is_none() {
            return;
        }
        let mut completed = self.completed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        completed.push_back(meta.clone());
        while completed.len() > COMPLETED_KEPT {
            // The analysis loop is far behind: the oldest is certainly analysed or dropped by now.
            if let Some(old) = completed.pop_front() {
                self.processed.send_replace(Some(old));
            }
        }
        drop(completed);
        self.demuxed.send_replace(Some(meta));
    }

    /// Analysis loop: it has taken a frame of `current`; frames are taken in order, so every
    /// completed fragment before it has been fully analysed.
    pub fn frame_taken(&self, current: Option<&FragmentMeta>) {
        let Some(number) = current.and_then(|m| m.fragment_number.as_ref()) else {
            return;
        };
        self.release(|n| n < number);
    }

    /// Analysis loop: the input ended and every queued frame was analysed.
    pub fn drained(&self) {
        self.release(|_| true);
    }

    fn release(&self, done: impl Fn(&FragmentNumber) -> bool) {
        let mut completed = self.completed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut newest = None;
        while let Some(front) = completed.front() {
            match &front.fragment_number {
                Some(n) if !done(n) => break,
                _ => newest = completed.pop_front(),
            }
        }
        drop(completed);
        if let Some(meta) = newest {
            self.processed.send_replace(Some(meta));
        }
    }

    /// The newest fragment read completely (the KVS source resumes after it).
    pub fn last_demuxed(&self) -> Option<Arc<FragmentMeta>> {
        self.demuxed.borrow().clone()
    }

    /// Follows the newest fully analysed fragment (the checkpoint writer).
    pub fn subscribe_processed(&self) -> watch::Receiver<Option<Arc<FragmentMeta>>> {
        self.processed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(n: &str) -> Arc<FragmentMeta> {
        Arc::new(FragmentMeta { fragment_number: FragmentNumber::parse(n), ..FragmentMeta::default() })
    }

    #[test]
    fn a_fragment_is_processed_once_a_later_fragments_frame_is_taken() {
        let p = FragmentProgress::default();
        let rx = p.subscribe_processed();
        p.fragment_demuxed(meta("10"));
        p.fragment_demuxed(meta("20"));
        assert_eq!(p.last_demuxed().and_then(|m| m.fragment_number.clone()), FragmentNumber::parse("20"));
        p.frame_taken(Some(&meta("10")));
        assert!(rx.borrow().is_none(), "fragment 10's frames may still be in analysis");
        p.frame_taken(Some(&meta("20")));
        assert_eq!(rx.borrow().as_ref().and_then(|m| m.fragment_number.clone()), FragmentNumber::parse("10"));
        p.drained();
        assert_eq!(rx.borrow().as_ref().and_then(|m| m.fragment_number.clone()), FragmentNumber::parse("20"));
    }
}
