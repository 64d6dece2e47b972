//! A timer kept from one wait to the next.

use async_io::Timer;
use std::time::Instant;

/// Fires at a deadline or before it, for a driver that waits on its state
/// machine's `poll_timeout` again and again.
///
/// A fresh [`Timer`] per wait registers a timer with async-io's reactor,
/// which wakes the reactor: an extra round of system calls per message. An
/// alarm is set only when a deadline comes earlier than where it stands. A
/// deadline that moved later (state machines move theirs with every frame)
/// leaves it where it is: it fires early once, the driver finds nothing due
/// and waits again, and the next [`arm`](Self::arm) sets it anew.
#[derive(Debug)]
pub(crate) struct Alarm {
    timer: Timer,
    /// Where `timer` is set; `None` once it fired, or before it is set.
    at: Option<Instant>,
}

impl Alarm {
    /// An alarm that is not set.
    pub(crate) fn new() -> Alarm {
        Alarm {
            timer: Timer::never(),
            at: None,
        }
    }

    /// Makes the alarm fire by `deadline` at the latest (`None`: no
    /// deadline, which leaves it as it is).
    pub(crate) fn arm(&mut self, deadline: Option<Instant>) {
        if let Some(at) = deadline.filter(|&at| self.at.is_none_or(|set| at < set)) {
            self.timer.set_at(at);
            self.at = Some(at);
        }
    }

    /// Waits until the alarm fires; forever if it is not set. Dropping the
    /// future before it is ready loses nothing: a timer's firing is taken,
    /// and the alarm marked unset, in the same poll that completes it.
    pub(crate) async fn ring(&mut self) {
        (&mut self.timer).await;
        self.at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_by_the_earliest_deadline_and_is_set_again_after() {
        async_io::block_on(async {
            let start = Instant::now();
            let mut alarm = Alarm::new();
            alarm.arm(Some(start + Duration::from_secs(30)));
            // Earlier: moves. Later: stays.
            alarm.arm(Some(start + Duration::from_millis(20)));
            alarm.arm(Some(start + Duration::from_secs(60)));
            alarm.ring().await;
            let waited = start.elapsed();
            assert!(waited >= Duration::from_millis(20), "{waited:?}");
            assert!(waited < Duration::from_secs(10), "{waited:?}");
            // Fired: the next deadline sets it, even a later one.
            let again = Instant::now();
            alarm.arm(Some(again + Duration::from_millis(20)));
            alarm.ring().await;
            assert!(again.elapsed() >= Duration::from_millis(20));
        });
    }

    #[test]
    fn an_alarm_never_set_does_not_fire() {
        async_io::block_on(async {
            let mut alarm = Alarm::new();
            alarm.arm(None);
            let fired = futures_lite::future::or(
                async {
                    alarm.ring().await;
                    true
                },
                async {
                    Timer::after(Duration::from_millis(50)).await;
                    false
                },
            )
            .await;
            assert!(!fired);
        });
    }
}
