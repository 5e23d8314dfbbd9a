//! ISO 8601 durations as the security agents read them.
//!
//! [`millis`] reads the integer `P[nW][nD][T[nH][nM][nS]]` forms (plus the
//! month of the C agent's canonical output, 30 days) into milliseconds, so
//! that rules can compare `PT60M` with `PT1H` by value.
//! [`check_agent_duration`] is the `agent-duration` schema format: the subset
//! both agents accept, longer than zero and within the C agent's `u32`
//! milliseconds (`reference/security-module-twin.md` §3).

/// The C agent holds durations as `u32` milliseconds.
pub const MAX_AGENT_MILLIS: u64 = 4_294_967_295;

/// Why a duration is unusable by the agents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DurationProblem {
    /// Not a duration the parser understands.
    Malformed,
    /// Years, months or weeks, which one agent or the other misreads.
    UnsupportedUnit,
    /// Zero length, which the C agent rejects.
    Zero,
    /// Longer than the C agent can hold.
    TooLong,
}

impl DurationProblem {
    /// A lowercase phrase for messages.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::Malformed => "is not an ISO 8601 duration",
            Self::UnsupportedUnit => {
                "uses years, months or weeks, which the security agents do not read alike"
            }
            Self::Zero => "is zero, which the C agent rejects",
            Self::TooLong => {
                "is longer than 4294967295 ms (about 49 days 17 hours), the C agent's limit"
            }
        }
    }
}

/// The length of `text` in milliseconds, for integer ISO 8601 durations.
///
/// # Errors
/// [`DurationProblem::Malformed`] when `text` is not such a duration.
pub fn millis(text: &str) -> Result<u64, DurationProblem> {
    let rest = text.strip_prefix('P').ok_or(DurationProblem::Malformed)?;
    let (date, time) = match rest.split_once('T') {
        Some((date, time)) if !time.is_empty() => (date, Some(time)),
        Some(_) => return Err(DurationProblem::Malformed),
        None => (rest, None),
    };
    if date.is_empty() && time.is_none() {
        return Err(DurationProblem::Malformed);
    }
    let date_units: &[(char, u64)] = &[
        ('Y', 365 * 86_400_000),
        ('M', 30 * 86_400_000),
        ('W', 7 * 86_400_000),
        ('D', 86_400_000),
    ];
    let time_units: &[(char, u64)] = &[('H', 3_600_000), ('M', 60_000), ('S', 1_000)];
    let total = sum_components(date, date_units)?;
    let total = total
        .checked_add(time.map_or(Ok(0), |time| sum_components(time, time_units))?)
        .ok_or(DurationProblem::TooLong)?;
    Ok(total)
}

/// Sums `<digits><unit>` components whose units appear in `units` order.
fn sum_components(mut text: &str, units: &[(char, u64)]) -> Result<u64, DurationProblem> {
    let mut total: u64 = 0;
    let mut next_unit = 0;
    while !text.is_empty() {
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let (number, rest) = text.split_at(digits);
        let mut chars = rest.chars();
        let unit = chars.next().ok_or(DurationProblem::Malformed)?;
        if number.is_empty() {
            return Err(DurationProblem::Malformed);
        }
        let position = units
            .iter()
            .skip(next_unit)
            .position(|(name, _)| *name == unit)
            .ok_or(DurationProblem::Malformed)?;
        let (_, scale) = units
            .get(next_unit + position)
            .ok_or(DurationProblem::Malformed)?;
        next_unit += position + 1;
        let count: u64 = number.parse().map_err(|_| DurationProblem::TooLong)?;
        total = count
            .checked_mul(*scale)
            .and_then(|part| total.checked_add(part))
            .ok_or(DurationProblem::TooLong)?;
        text = chars.as_str();
    }
    Ok(total)
}

/// Checks `text` against what both security agents accept.
///
/// # Errors
/// The first problem found.
pub fn check_agent_duration(text: &str) -> Result<u64, DurationProblem> {
    let value = millis(text)?;
    let date = text
        .strip_prefix('P')
        .map_or("", |rest| rest.split('T').next().unwrap_or(""));
    if date.contains(['Y', 'M', 'W']) {
        return Err(DurationProblem::UnsupportedUnit);
    }
    match value {
        0 => Err(DurationProblem::Zero),
        v if v > MAX_AGENT_MILLIS => Err(DurationProblem::TooLong),
        v => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::{DurationProblem, check_agent_duration, millis};

    #[test]
    fn reads_the_forms_agents_write() {
        assert_eq!(millis("PT7M"), Ok(420_000));
        assert_eq!(millis("PT60M"), millis("PT1H"));
        assert_eq!(millis("P9D"), millis("P1W2D"));
        assert_eq!(millis("P1DT2H3M4S"), Ok(93_784_000));
        assert_eq!(millis("P1M"), Ok(30 * 86_400_000));
    }

    #[test]
    fn rejects_what_the_schema_pattern_rejects() {
        for bad in [
            "P", "PT", "P1DT", "-PT1M", "pt7m", "PT1.5S", "P5S", "PT1M1H", "7M", "",
        ] {
            assert_eq!(millis(bad), Err(DurationProblem::Malformed), "{bad}");
        }
    }

    #[test]
    fn agent_subset_excludes_units_zero_and_overflow() {
        assert_eq!(check_agent_duration("PT7M"), Ok(420_000));
        assert_eq!(
            check_agent_duration("P1Y"),
            Err(DurationProblem::UnsupportedUnit)
        );
        assert_eq!(
            check_agent_duration("P1W"),
            Err(DurationProblem::UnsupportedUnit)
        );
        assert_eq!(check_agent_duration("PT0S"), Err(DurationProblem::Zero));
        assert_eq!(check_agent_duration("P50D"), Err(DurationProblem::TooLong));
        assert_eq!(check_agent_duration("P49DT17H"), Ok(4_294_800_000));
        assert_eq!(
            check_agent_duration("PT99999999999999999999S"),
            Err(DurationProblem::TooLong)
        );
    }
}
