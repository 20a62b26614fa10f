//! How far behind live a camera is, and what its decode thread does about it.
//!
//! - **Live** (within `max_lag`, frames arriving at the stream's own pace): the hand-off drops
//!   the oldest frame when inference is momentarily slower than the frame rate.
//! - **Catch-up** (behind by more than `max_lag`, or input already waiting frame after frame, as
//!   a backlog served at full speed is): every sampled frame is analysed; a full hand-off blocks the decode thread,
//!   which slows the read (GetMedia's bounded channel) instead of dropping.
//! - **Skip** (behind by more than `skip_after`): jump to the newest key frame.
//!
//! "Behind" is judged by three signals: the service's own `MILLIS_BEHIND_NOW` (the tag that ends
//! each KVS fragment; immune to a producer's clock), the frame's producer time against the wall
//! clock (a replayed or re-served capture can carry tags recorded at live), and, needing no clock
//! or tag at all, whether more of the stream is already here: at live the decode thread outruns
//! the network and waits for bytes, while a backlog always has bytes waiting. Catching up costs
//! nothing but latency, so any of the three is enough for it; skipping loses video, so only the
//! service's word decides it.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::CatchUp;
use crate::media::{FragmentMeta, FragmentNumber};

/// What to do with the frames now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    Live,
    CatchUp,
    /// Skip ahead: the stream was this far behind.
    Skip {
        behind: Duration,
    },
}

/// Decoded frames over which "input was waiting" is counted.
const READY_WINDOW: usize = 10;
/// Of those, this many with input waiting make a backlog (one chunk arriving during a decode at
/// live does not).
const READY_BACKLOG: usize = 8;
/// Fewer frames than this say nothing yet.
const READY_MIN: usize = 3;

/// Judges each decoded frame's lag; one per camera run.
#[derive(Debug)]
pub struct LagJudge {
    catch_up: CatchUp,
    /// Whether input was waiting, for the last decoded frames.
    ready: VecDeque<bool>,
    /// The current fragment: its number and its first frame's timestamp.
    fragment: Option<(Option<FragmentNumber>, i64)>,
    /// Tags of fragments up to this one came before a skip: they describe the old position.
    ignore_through: Option<FragmentNumber>,
    behind: Option<Duration>,
}

/// What the judge knows about one decoded frame.
pub struct Observed<'a> {
    pub timestamp_ns: i64,
    /// Bytes were already waiting in the input when the frame was decoded.
    pub input_ready: bool,
    pub fragment: Option<&'a FragmentMeta>,
    /// The newest completely read fragment (its `MILLIS_BEHIND_NOW` ends it).
    pub last_complete: Option<&'a FragmentMeta>,
}

impl LagJudge {
    pub fn new(catch_up: CatchUp) -> Self {
        Self {
            catch_up,
            ready: VecDeque::with_capacity(READY_WINDOW + 1),
            fragment: None,
            ignore_through: None,
            behind: None,
        }
    }

    /// The lag of the last frame judged, when a signal gave one.
    pub fn behind(&self) -> Option<Duration> {
        self.behind
    }

    /// A skip was made: forget the old position (its tags and its pace).
    pub fn skipped(&mut self, through: Option<FragmentNumber>) {
        self.ignore_through = through;
        self.ready.clear();
        self.fragment = None;
        self.behind = None;
    }

    pub fn judge(&mut self, f: &Observed<'_>) -> Pace {
        self.ready.push_back(f.input_ready);
        while self.ready.len() > READY_WINDOW {
            self.ready.pop_front();
        }
        let server = self.server_behind(f.last_complete);
        let clock = self.clock_behind(f.timestamp_ns, f.fragment);
        // Catching up costs only latency: the larger of the two says how far behind to act on.
        let behind = match (server, clock) {
            (Some(s), Some(c)) => Some(s.max(c)),
            (s, c) => s.or(c),
        };
        self.behind = behind;
        if let Some(server) = server
            && server > self.catch_up.skip_after
        {
            return Pace::Skip { behind: server };
        }
        if behind.is_some_and(|b| b > self.catch_up.max_lag) || self.backlog() { Pace::CatchUp } else { Pace::Live }
    }

    /// Input was waiting for most recent frames: the source is serving a backlog.
    fn backlog(&self) -> bool {
        let waiting = self.ready.iter().filter(|r| **r).count();
        self.ready.len() >= READY_MIN && waiting * READY_WINDOW >= READY_BACKLOG * self.ready.len()
    }

    /// `MILLIS_BEHIND_NOW` of the newest complete fragment of the current position.
    fn server_behind(&self, last_complete: Option<&FragmentMeta>) -> Option<Duration> {
        let meta = last_complete?;
        if let (Some(ignored), Some(n)) = (&self.ignore_through, &meta.fragment_number)
            && n <= ignored
        {
            return None;
        }
        meta.millis_behind_now.map(Duration::from_millis)
    }

    /// Wall clock minus the frame's producer time (the fragment's producer timestamp plus the
    /// frame's offset in it).
    fn clock_behind(&mut self, timestamp_ns: i64, fragment: Option<&FragmentMeta>) -> Option<Duration> {
        let meta = fragment?;
        let produced_ms = meta.producer_timestamp?.millis;
        let number = meta.fragment_number.clone();
        let first_ts = match &self.fragment {
            Some((n, first)) if *n == number && number.is_some() => *first,
            _ => {
                self.fragment = Some((number, timestamp_ns));
                timestamp_ns
            }
        };
        let frame_ms = produced_ms.saturating_add((timestamp_ns - first_ts) / 1_000_000);
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_millis();
        let behind_ms = i64::try_from(now_ms).ok()?.saturating_sub(frame_ms);
        Some(Duration::from_millis(u64::try_from(behind_ms).unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::KvsTimestamp;

    const POLICY: CatchUp = CatchUp { max_lag: Duration::from_secs(5), skip_after: Duration::from_secs(60) };

    fn fragment(n: &str, behind_ms: Option<u64>, produced_ms: Option<i64>) -> FragmentMeta {
        FragmentMeta {
            fragment_number: FragmentNumber::parse(n),
            millis_behind_now: behind_ms,
            producer_timestamp: produced_ms.map(|millis| KvsTimestamp { millis }),
            ..FragmentMeta::default()
        }
    }

    fn now_ms() -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    }

    /// 30 fps frames; `ready(i)`: input was waiting at frame `i`.
    fn feed(
        judge: &mut LagJudge,
        frames: usize,
        ready: fn(usize) -> bool,
        meta: &FragmentMeta,
        last: Option<&FragmentMeta>,
    ) -> Vec<Pace> {
        (0..frames)
            .map(|i| {
                judge.judge(&Observed {
                    timestamp_ns: i as i64 * 33_333_333,
                    input_ready: ready(i),
                    fragment: Some(meta),
                    last_complete: last,
                })
            })
            .collect()
    }

    const WAITING: fn(usize) -> bool = |_| true;
    /// At live: a chunk now and then arrives during a decode.
    const LIVE: fn(usize) -> bool = |i| i % 7 == 0;

    #[test]
    fn a_live_stream_at_its_own_pace_is_live() {
        let mut j = LagJudge::new(POLICY);
        let live = fragment("10", None, Some(now_ms() - 3_000));
        let paces = feed(&mut j, 60, LIVE, &live, Some(&fragment("9", Some(800), None)));
        assert!(paces.iter().all(|p| *p == Pace::Live), "{paces:?}");
        let behind = j.behind().expect("known");
        assert!(
            behind >= Duration::from_millis(800) && behind < Duration::from_secs(5),
            "the larger signal: {behind:?}"
        );
    }

    #[test]
    fn a_backlog_served_at_full_speed_catches_up_whatever_its_tags_say() {
        let mut j = LagJudge::new(POLICY);
        // Tags recorded at live (1 s behind), but the input always has bytes waiting.
        let paces = feed(&mut j, 60, WAITING, &fragment("10", None, None), Some(&fragment("9", Some(1_000), None)));
        assert_eq!(paces[0], Pace::Live, "nothing known yet");
        assert!(paces[2..].iter().all(|p| *p == Pace::CatchUp), "{paces:?}");
        // Once the backlog is read, the camera waits for the network again: live.
        let paces = feed(&mut j, 30, |_| false, &fragment("11", None, None), Some(&fragment("10", Some(1_000), None)));
        assert_eq!(paces.last(), Some(&Pace::Live));
    }

    #[test]
    fn behind_by_more_than_max_lag_catches_up_even_at_real_time_pace() {
        let mut j = LagJudge::new(POLICY);
        let paces = feed(&mut j, 30, LIVE, &fragment("10", None, None), Some(&fragment("9", Some(12_000), None)));
        assert!(paces.iter().all(|p| *p == Pace::CatchUp));
        // Before any tag: the producer clock.
        let mut j = LagJudge::new(POLICY);
        let old = fragment("10", None, Some(now_ms() - 20_000));
        assert!(feed(&mut j, 5, LIVE, &old, None).iter().all(|p| *p == Pace::CatchUp));
    }

    #[test]
    fn only_the_service_decides_a_skip_and_tags_from_before_it_are_forgotten() {
        let mut j = LagJudge::new(POLICY);
        // A producer clock a day behind is caught up on, never skipped.
        let skewed = fragment("10", None, Some(now_ms() - 86_400_000));
        assert!(feed(&mut j, 5, LIVE, &skewed, None).iter().all(|p| *p == Pace::CatchUp));
        let far = fragment("10", Some(120_000), None);
        let paces = feed(&mut j, 1, LIVE, &fragment("11", None, None), Some(&far));
        assert_eq!(paces, vec![Pace::Skip { behind: Duration::from_secs(120) }]);
        j.skipped(FragmentNumber::parse("12"));
        let after = feed(&mut j, 1, LIVE, &fragment("40", None, None), Some(&far));
        assert_eq!(after, vec![Pace::Live], "the old position's tag no longer counts");
        assert_eq!(j.behind(), None);
    }
}
