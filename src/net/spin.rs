//! Adaptive polling before the event loop sleeps.
//!
//! A request through a published port wakes the net thread three or four
//! times within a few dozen microseconds: the client connects, the
//! container answers, the client closes. Each wake-up from sleep costs more
//! than the work it brings, most of all in a virtual machine, where a
//! sleeping CPU halts and is woken by an interrupt through the hypervisor.
//! So after an event the loop keeps polling (waits of zero) for a short
//! window before it sleeps, as KVM's halt-polling does for a vCPU: the
//! window grows while the next event keeps coming sooner than its limit
//! and shrinks when a poll runs out with nothing, so a busy exchange is
//! served without sleeping and a quiet or slow one costs no polling. An
//! idle container sleeps as before. Bulk transfers close the window (the
//! event loop calls [`Spin::close`]): they keep the CPUs busy with the
//! programs at both ends, which polling would only slow down.

use std::time::{Duration, Instant};

/// The longest window: events further apart than this are slept through.
/// (KVM's default for halt-polling is the same.)
const MAX_WINDOW: Duration = Duration::from_micros(200);
/// The first window after a quick wake-up; below it the window closes.
const MIN_WINDOW: Duration = Duration::from_micros(10);

#[derive(Debug, Default)]
pub struct Spin {
    window: Duration,
    /// When the loop last ran out of work, while it waits for more.
    idle_since: Option<Instant>,
}

impl Spin {
    /// The timeout for the next wait, given the one the loop needs.
    pub fn timeout(&mut self, wanted: Option<Duration>, now: Instant) -> Option<Duration> {
        if wanted == Some(Duration::ZERO) {
            // Still busy: not waiting at all.
            self.idle_since = None;
            return wanted;
        }
        let since = *self.idle_since.get_or_insert(now);
        if now.duration_since(since) < self.window {
            Some(Duration::ZERO)
        } else {
            wanted
        }
    }

    /// Notes whether the wait brought events; with them, the time since
    /// the loop went idle adjusts the window (as KVM adjusts a vCPU's).
    pub fn woke(&mut self, events: bool, now: Instant) {
        if !events {
            return;
        }
        let Some(since) = self.idle_since.take() else {
            return;
        };
        let idle = now.duration_since(since);
        if idle <= self.window {
            // Caught while polling.
        } else if idle < MAX_WINDOW {
            // Slept, though a longer window would have caught it.
            self.window = (self.window * 2).clamp(MIN_WINDOW, MAX_WINDOW);
        } else {
            // Too far apart: polling was (or would be) wasted.
            self.window /= 2;
            if self.window < MIN_WINDOW {
                self.window = Duration::ZERO;
            }
        }
    }

    /// Closes the window: the loop is moving bulk data.
    pub fn close(&mut self) {
        self.window = Duration::ZERO;
        self.idle_since = None;
    }

    #[cfg(test)]
    fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLEEP: Option<Duration> = None;
    const POLL: Option<Duration> = Some(Duration::ZERO);

    /// Waits (polls while told to) until an event `after` the loop went
    /// idle; returns how many polls came first.
    fn event_after(spin: &mut Spin, now: &mut Instant, after: Duration) -> u32 {
        let due = *now + after;
        let mut polls = 0;
        loop {
            match spin.timeout(SLEEP, *now) {
                POLL => {
                    polls += 1;
                    *now += Duration::from_micros(1);
                    if *now >= due {
                        spin.woke(true, *now);
                        return polls;
                    }
                    spin.woke(false, *now);
                }
                _ => {
                    *now = due.max(*now);
                    spin.woke(true, *now);
                    return polls;
                }
            }
        }
    }

    #[test]
    fn events_close_together_open_the_window_until_polling_catches_them() {
        let mut spin = Spin::default();
        let mut now = Instant::now();
        let gap = Duration::from_micros(30);
        assert_eq!(event_after(&mut spin, &mut now, gap), 0);
        assert_eq!(spin.window(), MIN_WINDOW);
        // 10 -> 20 -> 40 µs, which catches a 30 µs gap without sleeping.
        event_after(&mut spin, &mut now, gap);
        event_after(&mut spin, &mut now, gap);
        assert_eq!(spin.window(), 4 * MIN_WINDOW);
        assert_eq!(event_after(&mut spin, &mut now, gap), 30);
        assert_eq!(spin.window(), 4 * MIN_WINDOW);
    }

    #[test]
    fn events_far_apart_close_the_window_and_it_never_passes_the_limit() {
        let mut spin = Spin::default();
        let mut now = Instant::now();
        for _ in 0..10 {
            event_after(&mut spin, &mut now, MAX_WINDOW - Duration::from_micros(10));
        }
        assert_eq!(spin.window(), MAX_WINDOW);
        // Halved each time: 100, 50, 25, 12.5, then closed.
        for _ in 0..5 {
            event_after(&mut spin, &mut now, Duration::from_millis(5));
        }
        assert_eq!(spin.window(), Duration::ZERO);
        // Closed: the loop sleeps at once.
        assert_eq!(
            event_after(&mut spin, &mut now, Duration::from_millis(5)),
            0
        );
    }

    #[test]
    fn a_loop_that_must_not_wait_is_not_idle() {
        let mut spin = Spin::default();
        let now = Instant::now();
        assert_eq!(spin.timeout(POLL, now), POLL);
        spin.woke(true, now + Duration::from_micros(20));
        assert_eq!(spin.window(), Duration::ZERO);
        let wanted = Some(Duration::from_secs(5));
        assert_eq!(spin.timeout(wanted, now), wanted);
    }
}
