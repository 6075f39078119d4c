//! JUnit XML for CI systems that show test reports: one suite per drill, one case per step
//! (and per steady-state check), failures carrying the runner's message.

use super::runner::{ScenarioReport, StepReport};

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

fn case(out: &mut String, suite: &str, name: &str, step: Option<&StepReport>, skipped: bool) {
    let time = step.map_or(0.0, |s| s.duration_secs);
    out.push_str(&format!(
        "    <testcase classname=\"{}\" name=\"{}\" time=\"{time:.3}\"",
        escape(suite),
        escape(name)
    ));
    match step {
        Some(s) if !s.passed => out.push_str(&format!(
            ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
            escape(&s.failure()),
            escape(&s.detail)
        )),
        None if skipped => out.push_str(">\n      <skipped/>\n    </testcase>\n"),
        _ => out.push_str("/>\n"),
    }
}

pub fn render(reports: &[(ScenarioReport, Vec<String>)]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for (r, descriptions) in reports {
        let mut cases = String::new();
        let (mut tests, mut failures, mut skipped) = (0, 0, 0);
        let mut add = |name: &str, step: Option<&StepReport>, skip: bool| {
            tests += 1;
            if step.is_some_and(|s| !s.passed) {
                failures += 1;
            }
            if step.is_none() && skip {
                skipped += 1;
            }
            case(&mut cases, &r.name, name, step, skip);
        };
        if let Some(s) = &r.steady_state_before {
            add("steady state before", Some(s), false);
        }
        for (i, d) in descriptions.iter().enumerate() {
            let step = r.steps.get(i);
            add(&format!("{:02} {d}", i + 1), step, true);
        }
        if let Some(s) = &r.steady_state_after {
            add("steady state after", Some(s), false);
        }
        // A drill that failed outside any step (stack not ready, interrupted) still shows.
        let outside = r.failure.is_some() && failures == 0;
        if outside {
            tests += 1;
            failures += 1;
            cases.push_str(&format!(
                "    <testcase classname=\"{0}\" name=\"drill\" time=\"0\">\n      <failure message=\"{1}\">{1}</failure>\n    </testcase>\n",
                escape(&r.name),
                escape(r.failure.as_deref().unwrap_or_default())
            ));
        }
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{:.3}\" timestamp=\"{}\">\n{cases}  </testsuite>\n",
            escape(&r.name),
            r.duration_secs,
            escape(&r.started_at)
        ));
    }
    out.push_str("</testsuites>\n");
    out
}
