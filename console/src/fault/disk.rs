//! `fill postgres` and `free postgres`: PostgreSQL's events volume (a stack made with `logctl
//! up --postgres-disk`) run out of space and given it back. `logctl fault` and the scenario
//! runner come through here.

use super::Outcome;
use crate::stack::disk::EventsDisk;
use crate::stack::layout::Layout;
use crate::stack::StackError;

/// The words drills and `logctl fault` use.
pub fn verb(fill: bool) -> &'static str {
    if fill {
        "fill"
    } else {
        "free"
    }
}

/// Checks that `component` names what these faults act on.
pub fn check_component(fill: bool, component: Option<&str>) -> Result<(), String> {
    match component {
        Some("postgres") => Ok(()),
        _ => Err(format!(
            "`{}` acts on PostgreSQL's events volume: write `{} postgres`",
            verb(fill),
            verb(fill)
        )),
    }
}

pub fn apply(fill: bool, component: Option<&str>, layout: &Layout) -> Result<Outcome, StackError> {
    check_component(fill, component).map_err(StackError::Other)?;
    let disk = EventsDisk::new(layout);
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    let detail = if fill {
        let taken = disk.fill()?;
        format!(
            "took {:.0} MiB: the events volume is full ({} bytes left)",
            mib(taken),
            disk.available()?
        )
    } else {
        let freed = disk.free()?;
        format!(
            "gave back {:.0} MiB: {:.0} MiB free on the events volume",
            mib(freed),
            mib(disk.available()?)
        )
    };
    Ok(Outcome {
        component: "postgres".into(),
        action: verb(fill).into(),
        detail,
    })
}
