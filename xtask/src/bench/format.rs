//! How figures and commands are written in the results and progress lines.

use super::stats::Summary;

pub(super) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub(super) fn fmt_summary(summary: Option<Summary>, decimals: usize) -> String {
    summary.map_or("n/a".into(), |s| {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            s.median,
            s.min,
            s.max,
            d = decimals
        )
    })
}

pub(super) fn fmt_pct(pct: Option<f64>) -> String {
    pct.map_or("n/a".into(), |v| format!("{v:.3}"))
}

/// A rate or count with an SI suffix: 3.52 M, 980 k, 12.0.
pub(super) fn si(value: f64) -> String {
    let (scaled, suffix) = match value.abs() {
        v if v >= 1e9 => (value / 1e9, " G"),
        v if v >= 1e6 => (value / 1e6, " M"),
        v if v >= 1e3 => (value / 1e3, " k"),
        _ => (value, ""),
    };
    let decimals = if scaled.abs() >= 100.0 {
        0
    } else if scaled.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{scaled:.decimals$}{suffix}")
}

/// A file size: 812 B, 41.2 KiB, 3.10 MiB.
pub(super) fn fmt_bytes(bytes: f64) -> String {
    match bytes {
        b if b >= 1024.0 * 1024.0 => format!("{:.2} MiB", b / (1024.0 * 1024.0)),
        b if b >= 1024.0 => format!("{:.1} KiB", b / 1024.0),
        b => format!("{b:.0} B"),
    }
}

/// argv as a shell would take it back (single quotes where needed).
pub(super) fn shell_join(argv: &[String]) -> String {
    let quote = |arg: &String| {
        if arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:".contains(c))
        {
            arg.clone()
        } else {
            format!("'{}'", arg.replace('\'', r"'\''"))
        }
    };
    argv.iter().map(quote).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_quoted_for_the_shell() {
        let argv = ["bpftrace", "-e", "a { b; }"].map(String::from);
        assert_eq!(shell_join(&argv), "bpftrace -e 'a { b; }'");
    }

    #[test]
    fn sizes_are_binary() {
        assert_eq!(fmt_bytes(812.0), "812 B");
        assert_eq!(fmt_bytes(42_188.0), "41.2 KiB");
        assert_eq!(fmt_bytes(3_250_586.0), "3.10 MiB");
    }

    #[test]
    fn si_scales() {
        assert_eq!(si(3_520_000.0), "3.52 M");
        assert_eq!(si(355_100_000.0), "355 M");
        assert_eq!(si(12.0), "12.0");
    }
}
