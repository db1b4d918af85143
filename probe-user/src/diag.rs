//! Diagnostics on stderr. Writing to stderr can fail (`2>/dev/full`, a closed pipe), and a
//! diagnostic that cannot be shown must not become a panic (`eprintln!` panics, exit 101)
//! or change the outcome: every write to stderr goes through [`line`], which drops errors.
//! An error that cannot be printed still makes probe exit 1, quietly.

use std::fmt;

/// Writes `args` and a newline to stderr in one write; a failed write is ignored.
pub fn line(args: fmt::Arguments<'_>) {
    let _ = write_line(&mut std::io::stderr().lock(), args);
}

fn write_line(out: &mut impl std::io::Write, args: fmt::Arguments<'_>) -> std::io::Result<()> {
    // One buffer, one write: lines of concurrent writers do not interleave.
    out.write_all(format!("{args}\n").as_bytes())
}

/// `eprintln!` that never panics: formats its arguments and calls [`line`].
#[macro_export]
macro_rules! diag {
    ($($arg:tt)*) => {
        $crate::diag::line(format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_in_a_newline() {
        let mut out = Vec::new();
        write_line(&mut out, format_args!("probe: error: {}", 42)).unwrap();
        assert_eq!(out, b"probe: error: 42\n");
    }

    #[test]
    fn write_errors_are_returned_not_panicked_on() {
        // What `2>/dev/full` gives: every write fails.
        struct Full;
        impl std::io::Write for Full {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::from_raw_os_error(libc::ENOSPC))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        assert!(write_line(&mut Full, format_args!("lost")).is_err());
    }
}
