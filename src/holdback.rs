//! Hold-back of the ingest watermark for targets whose samples carry their own
//! timestamps (`honor_timestamps` with timestamps in the body: `/federate` of another
//! Prometheus or promflow, pushgateway-like exporters).
//!
//! Such samples are older than the scrape that reads them (a federated sample carries
//! the other instance's scrape time), so a watermark at the scrape's start would leave
//! them behind it: late for the dataflow, and rules over them would never see them.
//! Each such target measures the *lag* of what it brings, `scrape start − exposed
//! timestamp`, over the samples that were new for their series (storage stored them;
//! a sample repeated from the previous scrape is not new and is not fed again), and
//! holds the watermark back by the largest lag of its last [`RECENT_SCRAPES`] scrapes
//! that brought any, plus [`MARGIN_MS`] for jitter, so that the next scrape's samples
//! are not behind it.
//!
//! Contract: [`Holdbacks::current_ms`] is the largest hold-back of the live targets
//! (0 when none exposes timestamps: the watermark is as without this module). A lag
//! above the cap (the lookback delta) is not held for — those samples stay late and
//! counted, as before — and the hold-back never exceeds the cap. A target's hold-back
//! goes when its loop ends ([`TargetHoldback`]'s drop) and decays when it stops
//! bringing timestamped samples: a measure older than the cap is forgotten. The first
//! scrape of a target has no measure yet: what it brings behind the watermark is late
//! and counted; the watermark (which never moves back) then stands still until the
//! clock is the hold-back past it, and scrapes meanwhile are late too.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// How many of a target's recent lag measures its hold-back covers.
pub const RECENT_SCRAPES: usize = 8;

/// Added to the largest measured lag: scheduling jitter of both instances' scrapes.
pub const MARGIN_MS: i64 = 500;

/// The hold-backs of every target that has one.
pub struct Holdbacks {
    /// Largest lag held for, and the most a hold-back can be (ms).
    cap_ms: i64,
    next_id: AtomicU64,
    /// Target → its hold-back (ms), only targets with one.
    by_target: Mutex<HashMap<u64, i64>>,
    /// The largest of `by_target`, read by every watermark advance.
    current_ms: AtomicI64,
}

impl Holdbacks {
    /// No hold-back yet; lags above `cap_ms` are not held for.
    pub fn new(cap_ms: i64) -> Arc<Holdbacks> {
        Arc::new(Holdbacks {
            cap_ms: cap_ms.max(0),
            next_id: AtomicU64::new(0),
            by_target: Mutex::new(HashMap::new()),
            current_ms: AtomicI64::new(0),
        })
    }

    /// How far (ms) the watermark is held behind the scrapes in flight and the clock.
    pub fn current_ms(&self) -> i64 {
        self.current_ms.load(Ordering::Relaxed)
    }

    /// A tracker for one target's scrape loop.
    pub fn target(self: &Arc<Self>) -> TargetHoldback {
        TargetHoldback {
            holdbacks: self.clone(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            recent: VecDeque::with_capacity(RECENT_SCRAPES),
            held_ms: 0,
        }
    }

    fn set(&self, id: u64, held_ms: i64) {
        let mut by_target = self.by_target.lock();
        if held_ms > 0 {
            by_target.insert(id, held_ms);
        } else {
            by_target.remove(&id);
        }
        let current = by_target.values().copied().max().unwrap_or(0);
        self.current_ms.store(current, Ordering::Relaxed);
    }
}

/// The lag measures of one target; dropping it releases its hold-back.
pub struct TargetHoldback {
    holdbacks: Arc<Holdbacks>,
    id: u64,
    /// (scrape start, largest lag of its new samples), for the last scrapes with a lag.
    recent: VecDeque<(i64, i64)>,
    held_ms: i64,
}

impl TargetHoldback {
    /// Records a scrape that started at `start_ms` and whose new samples lagged it by
    /// at most `lag_ms` (0 or less: none carried an older timestamp).
    pub fn observe(&mut self, start_ms: i64, lag_ms: i64) {
        let cap = self.holdbacks.cap_ms;
        if lag_ms > 0 && lag_ms <= cap {
            if self.recent.len() == RECENT_SCRAPES {
                self.recent.pop_front();
            }
            self.recent.push_back((start_ms, lag_ms));
        }
        while self
            .recent
            .front()
            .is_some_and(|&(at, _)| at < start_ms - cap)
        {
            self.recent.pop_front();
        }
        let held = self
            .recent
            .iter()
            .map(|&(_, lag)| (lag + MARGIN_MS).min(cap))
            .max()
            .unwrap_or(0);
        if held != self.held_ms {
            self.held_ms = held;
            self.holdbacks.set(self.id, held);
        }
    }

    /// This target's hold-back (ms).
    pub fn held_ms(&self) -> i64 {
        self.held_ms
    }
}

impl Drop for TargetHoldback {
    fn drop(&mut self) {
        if self.held_ms > 0 {
            self.holdbacks.set(self.id, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_largest_recent_lag_of_any_target_until_it_goes() {
        let holdbacks = Holdbacks::new(300_000);
        let mut a = holdbacks.target();
        let mut b = holdbacks.target();
        assert_eq!(holdbacks.current_ms(), 0);
        a.observe(10_000, 3_000);
        b.observe(10_000, 0);
        assert_eq!(holdbacks.current_ms(), 3_000 + MARGIN_MS);
        // Smaller lags do not shrink it while the larger one is recent.
        for k in 1..RECENT_SCRAPES as i64 {
            a.observe(10_000 + k * 1_000, 1_000);
        }
        assert_eq!(holdbacks.current_ms(), 3_000 + MARGIN_MS);
        a.observe(20_000, 1_000);
        assert_eq!(holdbacks.current_ms(), 1_000 + MARGIN_MS);
        b.observe(20_000, 2_000);
        assert_eq!(holdbacks.current_ms(), 2_000 + MARGIN_MS);
        drop(b);
        assert_eq!(holdbacks.current_ms(), 1_000 + MARGIN_MS);
        drop(a);
        assert_eq!(holdbacks.current_ms(), 0);
    }

    #[test]
    fn lags_beyond_the_cap_are_not_held_for_and_old_measures_decay() {
        let holdbacks = Holdbacks::new(60_000);
        let mut a = holdbacks.target();
        a.observe(100_000, 90_000);
        assert_eq!(holdbacks.current_ms(), 0, "beyond the cap: stays late");
        a.observe(100_000, 59_800);
        assert_eq!(holdbacks.current_ms(), 60_000, "capped");
        // No timestamped samples any more: the measure is forgotten after the cap.
        a.observe(150_000, 0);
        assert_eq!(holdbacks.current_ms(), 60_000);
        a.observe(160_001, 0);
        assert_eq!(holdbacks.current_ms(), 0);
    }
}
