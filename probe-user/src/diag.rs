//! Lines for the user on stderr. A write that fails (stderr closed, or `2>/dev/full`) is
//! dropped: a diagnostic must never be the reason probe fails.

use std::io::Write as _;

/// Writes `text` and a newline to stderr, ignoring errors.
pub fn line(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{text}");
}
