//! The spin report: which threads burn CPU and what they do, as text for people and JSON
//! for machines, with the same facts in both.
//!
//! [`analyze`] turns a symbolized [`Profile`] into a [`SpinReport`] (plain data, the JSON
//! schema); [`render_text`] and [`render_json`] only format it. Keeping the decisions
//! (threshold, classification, where the loop is) out of the renderers means both outputs
//! always agree and the logic is tested on hand-built profiles without root.

mod classify;
mod frame_text;
mod frames;
pub(crate) mod human;
mod merge;
mod schema;
mod spin;
mod text;

#[cfg(test)]
mod tests;

pub use classify::{KERNEL_BOUND_MIN_SHARE, POLL_STORM_MIN_SHARE, SYSCALL_STORM_PER_SEC};
pub use frames::LOOP_IN_MIN_SHARE;
pub use merge::{merged_stacks, StackCount};
pub use schema::{
    Classification, LoopIn, Loss, Scope, SpinKind, SpinReport, StackFrame, StackReport,
    SyscallRate, ThreadReport, WindowInfo, SCHEMA_VERSION,
};
pub use spin::{analyze, shown_tids};
pub use text::{render_text, TEXT_MAX_CMDLINE_CHARS, TEXT_MAX_FRAMES};

#[cfg(doc)]
use crate::model::Profile;

/// Default threshold: a thread using 90% of one CPU over the window is spinning.
pub const DEFAULT_THRESHOLD_PCT: f64 = 90.0;

/// Default number of syscalls, stacks and (when nothing spins) threads shown.
pub const DEFAULT_TOP: usize = 5;

/// What the spin report looks for and how much of it it shows.
#[derive(Clone, Debug, PartialEq)]
pub struct SpinOptions {
    /// A thread is spinning when its on-CPU time is at least this percentage of one CPU
    /// over the window (100 = a whole CPU).
    pub threshold_pct: f64,
    /// How many syscalls and stacks to show per thread, and how many of the busiest
    /// threads when nothing spins. Spinning threads are always all shown.
    pub top: usize,
}

impl Default for SpinOptions {
    fn default() -> Self {
        Self {
            threshold_pct: DEFAULT_THRESHOLD_PCT,
            top: DEFAULT_TOP,
        }
    }
}

/// Renders the report as pretty-printed JSON with a trailing newline.
pub fn render_json(report: &SpinReport) -> String {
    let mut json = serde_json::to_string_pretty(report).unwrap_or_else(|err| {
        // Plain structs with string keys and finite numbers cannot fail to serialize; if
        // that ever changes, still print valid JSON that says what went wrong.
        serde_json::json!({
            "schema_version": SCHEMA_VERSION,
            "command": "spin",
            "error": format!("failed to serialize the spin report: {err}"),
        })
        .to_string()
    });
    json.push('\n');
    json
}
