//! Reports of load runs and drills beyond the terminal: the JSON record a run leaves
//! ([`record`]), its HTML page with plots ([`html`], drawn by [`plot`]), a drill's page
//! ([`drill`]), and the comparison of a run with a baseline ([`compare`]) that CI can fail on. `logctl load --output/--report/--compare`
//! writes them as the run ends; `logctl report` renders a saved record again, as vegeta splits
//! attack from report.

pub mod compare;
pub mod drill;
pub mod html;
pub mod plot;
pub mod record;

use std::path::PathBuf;

use anyhow::Context;

use crate::scenario::condition::Observed;
use crate::scenario::observe::Point;
use compare::{Comparison, Limits};
use record::{LoadRecord, StackPoint};

/// What to make of a finished run's record.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// The JSON record.
    pub json: Option<PathBuf>,
    /// The HTML page.
    pub html: Option<PathBuf>,
    /// A saved run to compare against, read before the run (a wrong path should not cost one).
    pub baseline: Option<LoadRecord>,
    pub limits: Limits,
}

impl Outputs {
    /// Reads the baseline `--compare` names, if any.
    pub fn new(
        json: Option<PathBuf>,
        html: Option<PathBuf>,
        args: &crate::cli::CompareArgs,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            json,
            html,
            baseline: args
                .compare
                .as_deref()
                .map(LoadRecord::read)
                .transpose()
                .context("--compare")?,
            limits: limits(args)?,
        })
    }
}

/// Writes the record, compares it with the baseline, and writes the page (with the verdict);
/// returns the comparison for the caller's exit code.
pub fn write(
    record: &LoadRecord,
    title: &str,
    out: &Outputs,
) -> anyhow::Result<Option<Comparison>> {
    if let Some(path) = &out.json {
        std::fs::write(path, serde_json::to_string_pretty(record)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let comparison = out
        .baseline
        .as_ref()
        .map(|b| compare::compare(b, record, &out.limits));
    if let Some(path) = &out.html {
        let page = html::page(
            title,
            record,
            out.baseline.as_ref().zip(comparison.as_ref()),
        );
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(comparison)
}

/// The stack's side of a drill or run reading, for the record's plots.
pub fn stack_point(p: &Point) -> StackPoint {
    let num = |k: &str| match p.reading.get(k) {
        Some(Observed::Number(v)) => Some(*v),
        _ => None,
    };
    StackPoint {
        t: p.t,
        accepted_per_sec: num("accepted_rate").unwrap_or(0.0),
        stored_per_sec: num("stored_rate").unwrap_or(0.0),
        lag: num("lag"),
        lag_seconds: num("lag_seconds"),
    }
}

/// A fraction flag: `10%` or `0.1`.
pub fn fraction(flag: &str, v: &str) -> anyhow::Result<f64> {
    crate::load::parse_rate(v).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

/// The limits the `--max-*-regression` flags set.
pub fn limits(args: &crate::cli::CompareArgs) -> anyhow::Result<Limits> {
    Ok(Limits {
        max_p99_regression: fraction("--max-p99-regression", &args.max_p99_regression)?,
        max_throughput_regression: fraction(
            "--max-throughput-regression",
            &args.max_throughput_regression,
        )?,
        ..Limits::default()
    })
}

/// Prints the comparison (if any; to stderr when stdout carries JSON) and says whether it
/// found a regression.
pub fn print_comparison(c: Option<&Comparison>, to_stderr: bool) -> bool {
    let Some(c) = c else {
        return false;
    };
    if to_stderr {
        eprint!("{}", compare::render(c));
    } else {
        print!("{}", compare::render(c));
    }
    !c.regressions.is_empty()
}
