//! The figures a run prints: each with its value, its ratios to the
//! baselines it is judged against, its target and whether it is met, and at
//! the end the command lines that reproduce it.

use std::fmt::Write as _;

/// What a figure's value counts.
#[derive(Clone, Copy)]
pub(crate) enum Unit {
    Seconds,
    PerSecond,
    MiB,
    Twins,
}

/// A figure divided by a baseline.
struct Ratio {
    value: f64,
    /// The baseline, as the line names it: "the Value baseline".
    of: String,
}

/// Which side of its limit a figure must stay.
#[derive(Clone, Copy)]
pub(crate) enum Bound {
    AtMost,
    AtLeast,
}

/// What a target holds to its limit: the value or the first ratio.
#[derive(Clone, Copy)]
enum Subject {
    Value,
    Ratio,
}

struct Target {
    subject: Subject,
    bound: Bound,
    limit: f64,
}

impl Target {
    fn describe(&self, unit: Unit) -> String {
        let sign = match self.bound {
            Bound::AtMost => "<=",
            Bound::AtLeast => ">=",
        };
        match self.subject {
            Subject::Value => format!("{sign} {}", format_value(self.limit, unit)),
            Subject::Ratio => format!("{sign} {:.2}x", self.limit),
        }
    }

    fn met(&self, value: f64) -> bool {
        match self.bound {
            Bound::AtMost => value <= self.limit,
            Bound::AtLeast => value >= self.limit,
        }
    }
}

/// One measured figure.
pub(crate) struct Figure {
    label: String,
    /// `None`: not measured on this machine.
    value: Option<f64>,
    unit: Unit,
    ratios: Vec<Ratio>,
    target: Option<Target>,
    reproduce: Vec<String>,
}

impl Figure {
    pub(crate) fn new(label: impl Into<String>, value: Option<f64>, unit: Unit) -> Self {
        Self {
            label: label.into(),
            value,
            unit,
            ratios: Vec::new(),
            target: None,
            reproduce: Vec::new(),
        }
    }

    /// The figure divided by `baseline`, named `of`.
    pub(crate) fn ratio(mut self, baseline: f64, of: impl Into<String>) -> Self {
        if let Some(value) = self.value {
            self.ratios.push(Ratio {
                value: value / baseline,
                of: of.into(),
            });
        }
        self
    }

    /// A target on the value.
    pub(crate) fn target(mut self, bound: Bound, limit: f64) -> Self {
        self.target = Some(Target {
            subject: Subject::Value,
            bound,
            limit,
        });
        self
    }

    /// A target on the first ratio.
    pub(crate) fn ratio_target(mut self, bound: Bound, limit: f64) -> Self {
        self.target = Some(Target {
            subject: Subject::Ratio,
            bound,
            limit,
        });
        self
    }

    /// A command line that reproduces the figure (besides the suite's own).
    pub(crate) fn reproduce(mut self, command: impl Into<String>) -> Self {
        self.reproduce.push(command.into());
        self
    }

    /// "met", "NOT MET", or "not measured", when there is a target.
    fn verdict(&self) -> Option<&'static str> {
        let target = self.target.as_ref()?;
        let judged = match target.subject {
            Subject::Value => self.value,
            Subject::Ratio => self.ratios.first().map(|ratio| ratio.value),
        };
        Some(match judged {
            Some(judged) if target.met(judged) => "met",
            Some(_) => "NOT MET",
            None => "not measured",
        })
    }

    fn line(&self) -> String {
        let value = self
            .value
            .map_or_else(|| "not measured".to_owned(), |v| format_value(v, self.unit));
        let mut line = format!("  {:<48} {value:>14}", self.label);
        for ratio in &self.ratios {
            let _ = write!(line, "  {:.2}x {}", ratio.value, ratio.of);
        }
        if let (Some(target), Some(verdict)) = (&self.target, self.verdict()) {
            let _ = write!(line, "  [target {}: {verdict}]", target.describe(self.unit));
        }
        line
    }
}

fn format_value(value: f64, unit: Unit) -> String {
    match unit {
        Unit::Seconds => format!("{value:.3} s"),
        Unit::PerSecond => format!("{value:.0}/s"),
        Unit::MiB => format!("{value:.0} MiB"),
        Unit::Twins => format!("{value:.0} twins"),
    }
}

/// Starts a section whose figures are medians of `runs` runs.
pub(crate) fn section(name: &str, runs: usize) {
    println!();
    println!("== {name} (median of {runs} run(s))");
}

/// The figures of a run, printed as they come and summed up at the end.
pub(crate) struct Report {
    figures: Vec<(Figure, String)>,
}

impl Report {
    pub(crate) fn new() -> Self {
        Self {
            figures: Vec::new(),
        }
    }

    /// Prints `figure` and keeps it, with `suite`: the suite's command line
    /// that measures it again.
    pub(crate) fn figure(&mut self, figure: Figure, suite: &str) {
        println!("{}", figure.line());
        self.figures.push((figure, suite.to_owned()));
    }

    /// The targets and whether each is met, then every figure's command lines.
    pub(crate) fn finish(&self) {
        println!();
        println!("== targets");
        for (figure, _) in &self.figures {
            if let (Some(target), Some(verdict)) = (&figure.target, figure.verdict()) {
                println!(
                    "  {:<48} {:<14} {verdict}",
                    figure.label,
                    target.describe(figure.unit)
                );
            }
        }
        println!();
        println!("== reproduce");
        let same_commands = |(a, a_suite): &(Figure, String), (b, b_suite): &(Figure, String)| {
            a_suite == b_suite && a.reproduce == b.reproduce
        };
        for group in self.figures.chunk_by(same_commands) {
            let labels: Vec<&str> = group
                .iter()
                .map(|(figure, _)| figure.label.as_str())
                .collect();
            println!("  {}:", labels.join("; "));
            if let Some((figure, suite)) = group.first() {
                println!("    {suite}");
                for command in &figure.reproduce {
                    println!("    {command}");
                }
            }
        }
    }
}
