//! Throttles: IoT Hub's per-hub rates by tier and unit count
//! (`reference/iothub-rest-api.md` §11.1), and the token buckets that keep
//! a client under them or let the emulator enforce them.
//!
//! A [`Bucket`] is a generic cell rate algorithm: one slot every `interval`,
//! with `burst` slots that may be taken at once. The REST client waits for
//! its slot ([`Bucket::ready`]); the emulator either delays a request within
//! a backlog, as IoT Hub shapes traffic, or refuses it ([`Bucket::admit`]).
//! Time is tokio's, so tests run under a paused clock.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// An IoT Hub pricing tier (Basic tiers have no twins).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tier {
    /// Free: the S1 throttles on one unit.
    F1,
    /// Standard 1.
    #[default]
    S1,
    /// Standard 2.
    S2,
    /// Standard 3.
    S3,
}

impl FromStr for Tier {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_uppercase().as_str() {
            "F1" | "FREE" => Ok(Self::F1),
            "S1" => Ok(Self::S1),
            "S2" => Ok(Self::S2),
            "S3" => Ok(Self::S3),
            _ => Err(format!(
                "unknown IoT Hub tier `{text}`: expected F1, S1, S2 or S3 (Basic tiers have no twins)"
            )),
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F1 => "F1",
            Self::S1 => "S1",
            Self::S2 => "S2",
            Self::S3 => "S3",
        })
    }
}

/// What a request counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Get a device or module twin.
    TwinRead,
    /// Patch or replace a device or module twin.
    TwinUpdate,
    /// One page of `POST /devices/query`.
    Query,
    /// Identity registry create, retrieve, list, update, delete.
    Registry,
}

/// A rate: `per_second` slots a second, `burst` of them at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Sustained slots per second.
    pub per_second: f64,
    /// Slots that may be taken at once after a quiet spell.
    pub burst: u32,
}

/// A hub's throttles, per operation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Throttles {
    /// Twin reads.
    pub twin_reads: Rate,
    /// Twin updates.
    pub twin_updates: Rate,
    /// Query pages.
    pub queries: Rate,
    /// Identity registry operations.
    pub registry: Rate,
}

impl Throttles {
    /// IoT Hub's documented throttles for `tier` with `units` units
    /// (§11.1). Per-second throttles burst one second's worth; per-minute
    /// ones a minute's worth, as IoT Hub applies its limits per minute.
    #[must_use]
    pub fn for_hub(tier: Tier, units: u32) -> Self {
        let units = f64::from(units.max(1));
        let per_second = |per_second: f64| Rate {
            per_second,
            burst: whole(per_second),
        };
        let per_minute = |per_minute: f64| Rate {
            per_second: per_minute / 60.0,
            burst: whole(per_minute),
        };
        match tier {
            Tier::F1 | Tier::S1 => Self {
                twin_reads: per_second(100.0),
                twin_updates: per_second(50.0),
                queries: per_minute(20.0 * units),
                registry: per_minute(100.0 * units),
            },
            Tier::S2 => Self {
                twin_reads: per_second((10.0 * units).max(100.0)),
                twin_updates: per_second((5.0 * units).max(50.0)),
                queries: per_minute(20.0 * units),
                registry: per_minute(100.0 * units),
            },
            Tier::S3 => Self {
                twin_reads: per_second(500.0 * units),
                twin_updates: per_second(250.0 * units),
                queries: per_minute(1000.0 * units),
                registry: per_minute(5000.0 * units),
            },
        }
    }

    /// The same rates with per-second throttles spread evenly (no burst),
    /// as a client paces itself: requests leave at the rate, not in bursts
    /// that the hub would have to shape.
    #[must_use]
    pub fn evenly(mut self) -> Self {
        self.twin_reads.burst = 1;
        self.twin_updates.burst = 1;
        self
    }

    /// The rate `operation` counts against.
    #[must_use]
    pub fn rate(&self, operation: Operation) -> Rate {
        match operation {
            Operation::TwinRead => self.twin_reads,
            Operation::TwinUpdate => self.twin_updates,
            Operation::Query => self.queries,
            Operation::Registry => self.registry,
        }
    }
}

/// `value` rounded down to a whole count of at least one.
fn whole(value: f64) -> u32 {
    // Rates are small positive numbers; the cast saturates anyway.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a positive rate well inside u32"
    )]
    let count = value.floor() as u32;
    count.max(1)
}

/// A token bucket (generic cell rate algorithm) over tokio time.
#[derive(Debug)]
pub struct Bucket {
    /// Time between two slots.
    interval: Duration,
    /// How far ahead of its slot a request may go (the burst).
    tolerance: Duration,
    /// The theoretical arrival time of the next request.
    next: Mutex<Option<Instant>>,
}

impl Bucket {
    /// A bucket for `rate`.
    #[must_use]
    pub fn new(rate: Rate) -> Self {
        let interval = Duration::from_secs_f64(1.0 / rate.per_second.max(1e-6));
        Self {
            interval,
            tolerance: interval.saturating_mul(rate.burst.max(1) - 1),
            next: Mutex::new(None),
        }
    }

    /// Takes the next slot, at most `backlog` from now: returns when it
    /// starts, or `None` (and takes nothing) when it is further away.
    pub fn admit(&self, backlog: Duration) -> Option<Instant> {
        let now = Instant::now();
        let mut next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = next.map_or(now, |next| next.max(now));
        let start = slot.checked_sub(self.tolerance).unwrap_or(now).max(now);
        if start.duration_since(now) > backlog {
            return None;
        }
        *next = Some(slot + self.interval);
        Some(start)
    }

    /// Waits for the next slot.
    pub async fn ready(&self) {
        if let Some(start) = self.admit(Duration::MAX) {
            tokio::time::sleep_until(start).await;
        }
    }
}

/// One bucket per operation, for a hub's throttles.
#[derive(Debug)]
pub struct Buckets {
    twin_reads: Bucket,
    twin_updates: Bucket,
    queries: Bucket,
    registry: Bucket,
}

impl Buckets {
    /// Buckets for `throttles`.
    #[must_use]
    pub fn new(throttles: &Throttles) -> Self {
        Self {
            twin_reads: Bucket::new(throttles.twin_reads),
            twin_updates: Bucket::new(throttles.twin_updates),
            queries: Bucket::new(throttles.queries),
            registry: Bucket::new(throttles.registry),
        }
    }

    /// The bucket `operation` counts against.
    #[must_use]
    pub fn of(&self, operation: Operation) -> &Bucket {
        match operation {
            Operation::TwinRead => &self.twin_reads,
            Operation::TwinUpdate => &self.twin_updates,
            Operation::Query => &self.queries,
            Operation::Registry => &self.registry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_the_documented_table() {
        let s1 = Throttles::for_hub(Tier::S1, 4);
        assert!((s1.twin_reads.per_second - 100.0).abs() < f64::EPSILON);
        assert!((s1.twin_updates.per_second - 50.0).abs() < f64::EPSILON);
        assert_eq!(s1.queries.burst, 80, "20 queries a minute per unit");
        let s2 = Throttles::for_hub(Tier::S2, 30);
        assert!((s2.twin_updates.per_second - 150.0).abs() < f64::EPSILON);
        assert!((Throttles::for_hub(Tier::S2, 2).twin_updates.per_second - 50.0).abs() < 1e-9);
        let s3 = Throttles::for_hub(Tier::S3, 2);
        assert!((s3.twin_reads.per_second - 1000.0).abs() < f64::EPSILON);
        assert_eq!(s3.queries.burst, 2000);
        assert_eq!(Tier::from_str("s3"), Ok(Tier::S3));
        assert!(Tier::from_str("B1").unwrap_err().contains("Basic tiers"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_spaces_requests_after_its_burst() {
        let bucket = Bucket::new(Rate {
            per_second: 10.0,
            burst: 3,
        });
        let start = Instant::now();
        for _ in 0..3 {
            bucket.ready().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst goes at once");
        for _ in 0..10 {
            bucket.ready().await;
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_secs(1) && elapsed <= Duration::from_millis(1001),
            "ten more slots take a second, took {elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn admit_refuses_beyond_the_backlog_and_takes_nothing() {
        let bucket = Bucket::new(Rate {
            per_second: 1.0,
            burst: 1,
        });
        assert!(bucket.admit(Duration::ZERO).is_some());
        assert!(bucket.admit(Duration::from_millis(500)).is_none());
        let queued = bucket.admit(Duration::from_secs(2)).unwrap();
        assert_eq!(
            queued.duration_since(Instant::now()),
            Duration::from_secs(1)
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(bucket.admit(Duration::ZERO), Some(Instant::now()));
    }
}
