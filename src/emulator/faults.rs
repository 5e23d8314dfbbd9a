//! Fault injection: a share of requests answered 429 or 503, delayed, or
//! cut off by closing the connection, for testing clients against a hub
//! that misbehaves as real ones do. Seeded, so a test run repeats.
//!
//! Spec: `429=0.05,503=0.05,quota=0.01,drop=0.05,delay=0.1` (shares of
//! requests, which add up to at most 1; `quota` answers 403002, the daily
//! quota); `delay=0.1:500` delays by 500 ms (default 250).

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

/// What happens to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Served normally.
    None,
    /// Answered 429 `ThrottlingException` without being served.
    Throttle,
    /// Answered 503 `ServiceUnavailable` without being served.
    Unavailable,
    /// Answered 403 `IotHubQuotaExceeded` (the daily message quota).
    QuotaExceeded,
    /// Served after a delay.
    Delay(Duration),
    /// The connection is closed without an answer; when `after_serving`,
    /// the request was carried out first (the answer is lost).
    Drop {
        /// Whether the request was carried out.
        after_serving: bool,
    },
}

/// Shares of requests that meet each fault.
#[derive(Debug, Default)]
pub struct Faults {
    throttle: f64,
    unavailable: f64,
    quota: f64,
    drop: f64,
    delay: f64,
    delay_by: Duration,
    random: Mutex<Option<fastrand::Rng>>,
    /// Faults for the next requests, in order, before any draw.
    script: Mutex<VecDeque<Fault>>,
}

impl Faults {
    /// No faults.
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// Uses `seed` for the draws, so that a run repeats.
    #[must_use]
    pub fn seeded(mut self, seed: u64) -> Self {
        self.random = Mutex::new(Some(fastrand::Rng::with_seed(seed)));
        self
    }

    /// The next requests meet `faults`, in order (tests that need one
    /// exact fault at one exact request); later ones are drawn.
    #[must_use]
    pub fn scripted(faults: impl IntoIterator<Item = Fault>) -> Self {
        Self {
            script: Mutex::new(faults.into_iter().collect()),
            ..Self::default()
        }
    }

    /// Whether any fault is configured.
    #[must_use]
    pub fn any(&self) -> bool {
        self.throttle + self.unavailable + self.quota + self.drop + self.delay > 0.0
    }

    /// Draws the fault for the next request.
    pub fn draw(&self) -> Fault {
        let scripted = self
            .script
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front();
        if let Some(fault) = scripted {
            return fault;
        }
        if !self.any() {
            return Fault::None;
        }
        let (draw, coin) = {
            let mut random = self
                .random
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let random = random.get_or_insert_with(fastrand::Rng::new);
            (random.f64(), random.bool())
        };
        let mut bound = self.throttle;
        if draw < bound {
            return Fault::Throttle;
        }
        bound += self.unavailable;
        if draw < bound {
            return Fault::Unavailable;
        }
        bound += self.quota;
        if draw < bound {
            return Fault::QuotaExceeded;
        }
        bound += self.drop;
        if draw < bound {
            return Fault::Drop {
                after_serving: coin,
            };
        }
        bound += self.delay;
        if draw < bound {
            return Fault::Delay(self.delay_by);
        }
        Fault::None
    }
}

impl FromStr for Faults {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut faults = Self {
            delay_by: Duration::from_millis(250),
            ..Self::default()
        };
        for part in text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let (kind, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected KIND=SHARE, such as `503=0.05`"))?;
            let (share, millis) = match value.split_once(':') {
                Some((share, millis)) if kind == "delay" => {
                    let millis: u64 = millis.parse().map_err(|_| {
                        format!(
                            "`{part}`: the delay `{millis}` is not a whole number of milliseconds"
                        )
                    })?;
                    (share, Some(millis))
                }
                _ => (value, None),
            };
            let share: f64 = share
                .parse()
                .ok()
                .filter(|share: &f64| (0.0..=1.0).contains(share))
                .ok_or_else(|| format!("`{part}`: the share must be a number from 0 to 1"))?;
            match kind {
                "429" => faults.throttle = share,
                "503" => faults.unavailable = share,
                "quota" => faults.quota = share,
                "drop" => faults.drop = share,
                "delay" => {
                    faults.delay = share;
                    if let Some(millis) = millis {
                        faults.delay_by = Duration::from_millis(millis);
                    }
                }
                other => {
                    return Err(format!(
                        "unknown fault `{other}`: expected 429, 503, quota, drop or delay"
                    ));
                }
            }
        }
        if faults.throttle + faults.unavailable + faults.quota + faults.drop + faults.delay
            > 1.0 + 1e-9
        {
            return Err("the shares of all faults add up to more than 1".to_owned());
        }
        Ok(faults)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_shares_and_refuses_nonsense() {
        let faults = Faults::from_str("429=0.1, 503=0.1,drop=0.1,delay=0.2:40").unwrap();
        assert_eq!(faults.delay_by, Duration::from_millis(40));
        assert!(faults.any());
        assert!(Faults::from_str("").unwrap().draw() == Fault::None);
        assert!(
            Faults::from_str("500=0.1")
                .unwrap_err()
                .contains("unknown fault")
        );
        assert!(
            Faults::from_str("429=2")
                .unwrap_err()
                .contains("from 0 to 1")
        );
        assert!(
            Faults::from_str("429=0.6,503=0.6")
                .unwrap_err()
                .contains("more than 1")
        );
        assert!(Faults::from_str("429").unwrap_err().contains("KIND=SHARE"));
    }

    #[test]
    fn draws_follow_the_shares() {
        let faults = Faults::from_str("429=0.1,503=0.1,drop=0.1,delay=0.1")
            .unwrap()
            .seeded(7);
        let mut counts = [0_u32; 5];
        for _ in 0..10_000 {
            let slot = match faults.draw() {
                Fault::None => 0,
                Fault::Throttle => 1,
                Fault::Unavailable | Fault::QuotaExceeded => 2,
                Fault::Drop { .. } => 3,
                Fault::Delay(_) => 4,
            };
            counts[slot] += 1;
        }
        for count in &counts[1..] {
            assert!((800..1200).contains(count), "about 10% each: {counts:?}");
        }
    }
}
