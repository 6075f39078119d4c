//! The `logctl` console as a library: the CLI definition and the local stack it drives, so
//! tests and later front ends (the TUI, the scenario runner) use the same code as the binary.

pub mod bench;
pub mod cli;
pub mod dlq;
pub mod fault;
pub mod interrupt;
pub mod load;
pub mod report;
pub mod scenario;
pub mod signals;
pub mod soak;
pub mod stack;
pub mod storage;
pub mod token;
pub mod tui;
pub mod units;
