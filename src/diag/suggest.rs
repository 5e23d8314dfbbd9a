//! Did-you-mean: the closest name in scope by edit distance, or nothing.

/// The candidate closest to `input`, if it is close enough to be a likely
/// typo: a case-insensitive match, or a Damerau-Levenshtein distance of at most
/// a third of the input's length (at least 1, at most 3).
#[must_use]
pub fn did_you_mean<'a, I>(input: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let lowered = input.to_lowercase();
    let budget = (input.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .filter(|candidate| *candidate != input)
        .map(|candidate| {
            let distance = if candidate.to_lowercase() == lowered {
                0
            } else {
                strsim::damerau_levenshtein(&lowered, &candidate.to_lowercase())
            };
            (distance, candidate)
        })
        .filter(|(distance, _)| *distance <= budget)
        .min()
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggests_close_names_only() {
        let names = ["High", "Low", "Off"];
        assert_eq!(did_you_mean("Hihg", names), Some("High"));
        assert_eq!(did_you_mean("high", names), Some("High"));
        assert_eq!(did_you_mean("Medium", names), None);
        let keys = [
            "highPriorityMessageFrequency",
            "lowPriorityMessageFrequency",
        ];
        assert_eq!(
            did_you_mean("highPriorityMessageFrequncy", keys),
            Some("highPriorityMessageFrequency")
        );
        assert_eq!(did_you_mean("x", keys), None);
    }
}
