//! The last events the dispatcher committed, with their snapshots, for the live page
//! (`server::ui`, `GET /ui/events`). Bounded: the oldest goes when a new one comes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use crate::pipeline::events::Event;

/// Events kept.
pub const RECENT_EVENTS: usize = 50;
/// JPEG quality of snapshots encoded for the page alone (no sink stores snapshots).
pub const PAGE_SNAPSHOT_QUALITY: u8 = 75;

/// The last [`RECENT_EVENTS`] events, newest last.
#[derive(Default)]
pub struct RecentEvents {
    events: Mutex<VecDeque<Arc<RecentEvent>>>,
}

/// One event as the page lists it.
#[derive(Serialize)]
pub struct RecentEvent {
    /// Counts events since the process started: names its snapshot (`/ui/events/{seq}/snapshot.jpg`).
    pub seq: u64,
    pub event: Event,
    #[serde(skip)]
    pub snapshot: Option<Arc<Vec<u8>>>,
    /// Whether the event has a snapshot to show.
    pub has_snapshot: bool,
}

impl RecentEvents {
    pub fn push(&self, event: Event, snapshot: Option<Arc<Vec<u8>>>) {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        // The ring never empties once filled, so the newest entry carries the count.
        let seq = events.back().map_or(1, |e| e.seq + 1);
        events.push_back(Arc::new(RecentEvent { seq, event, has_snapshot: snapshot.is_some(), snapshot }));
        while events.len() > RECENT_EVENTS {
            events.pop_front();
        }
    }

    /// Newest first.
    pub fn list(&self) -> Vec<Arc<RecentEvent>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner).iter().rev().cloned().collect()
    }

    pub fn get(&self, seq: u64) -> Option<Arc<RecentEvent>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner).iter().find(|e| e.seq == seq).cloned()
    }
}
