//! An interactive SVG flame graph (click to zoom, Ctrl-F to search), drawn by inferno from
//! the folded stacks, so that both formats show the same stacks and weights.
//!
//! Colours say what a frame is: native code red, kernel orange, Python green (the hues
//! flamegraph.pl's Java palette gives native, kernel and managed code), `[off-cpu]` blue,
//! thread roots and `[truncated]` grey. Each function gets a shade of its hue from a hash
//! of its label, so neighbours are told apart and a function keeps its colour from run to
//! run. inferno takes the colours from a palette map filled in before drawing. It draws
//! kernel frames without their `_[k]`, as flamegraph.pl does: the colour tells them.

use std::io::{self, Write};

use inferno::flamegraph::color::{Color, PaletteMap};
use inferno::flamegraph::{self, Options as InfernoOptions, TextTruncateDirection};

use super::folded::folded_lines;
use super::{
    frame_label, one_line, samples, thread_label, OutputOptions, OFF_CPU_FRAME, TRUNCATED_FRAME,
};
use crate::model::{FrameKind, Profile, SampleKind};

/// Characters of the target that the title shows: about what fits the default width
/// (1200 px) with the rest of the title.
const TITLE_TARGET_CHARS: usize = 90;

/// What a box is, for its colour.
#[derive(Clone, Copy)]
enum Hue {
    Native,
    Kernel,
    Python,
    OffCpu,
    Marker,
}

/// Writes `profile` as an SVG flame graph. A profile without samples (the target slept
/// throughout) is a valid SVG that says so, with the title: a file is always written.
pub fn write_svg(
    profile: &Profile,
    options: &OutputOptions,
    out: &mut dyn Write,
) -> io::Result<()> {
    let lines = folded_lines(profile, options);
    if lines.is_empty() {
        return write_empty(profile, options, out);
    }
    let folded: Vec<String> = lines
        .iter()
        .map(|(path, weight)| format!("{path} {weight}"))
        .collect();
    let mut palette = palette(profile, options);
    let mut inferno = inferno_options(profile, options, &mut palette);
    flamegraph::from_lines(&mut inferno, folded.iter().map(String::as_str), out)
}

/// The SVG of a profile without samples: its title, and why there is no graph.
fn write_empty(profile: &Profile, options: &OutputOptions, out: &mut dyn Write) -> io::Result<()> {
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    write!(
        out,
        concat!(
            r#"<?xml version="1.0" standalone="no"?>"#,
            "\n",
            r#"<svg version="1.1" width="1200" height="70" xmlns="http://www.w3.org/2000/svg">"#,
            r#"<text x="600" y="24" text-anchor="middle" font-size="17" font-family="Verdana">{}</text>"#,
            r#"<text x="600" y="52" text-anchor="middle" font-size="12" font-family="Verdana">"#,
            "no samples: nothing in scope ran on a CPU during the recording</text></svg>\n"
        ),
        escape(&title(profile, options))
    )
}

fn inferno_options<'a>(
    profile: &Profile,
    options: &OutputOptions,
    palette: &'a mut PaletteMap,
) -> InfernoOptions<'a> {
    let mut inferno = InfernoOptions::default();
    inferno.title = title(profile, options);
    inferno.subtitle = Some(subtitle(profile));
    inferno.count_name = "samples".into();
    inferno.palette_map = Some(palette);
    // Keep the start of a name that does not fit: `is_zipf..`, not `..py)_[py]`.
    inferno.text_truncate_direction = TextTruncateDirection::Right;
    inferno
}

/// `target — 5.0 s, 497 samples, 3 lost` (the target says whether the window was cut
/// short), on one line, the target shortened to what fits the width.
fn title(profile: &Profile, options: &OutputOptions) -> String {
    let seconds = profile.window.duration_ns as f64 / 1e9;
    let loss = &profile.loss;
    format!(
        "{} — {seconds:.1} s, {} samples, {} lost",
        shorten(&one_line(&options.title), TITLE_TARGET_CHARS),
        loss.samples,
        loss.samples_lost
    )
}

/// The first `max` characters of `text`, with `…` when it was longer.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The frequency and the colour key; the unit of `[off-cpu]` boxes when there are any.
fn subtitle(profile: &Profile) -> String {
    let hz = profile.frequency_hz;
    let key = format!("{hz} Hz; red native, orange kernel, green Python");
    let off_cpu = samples(profile).any(|(_, sample)| sample.kind == SampleKind::OffCpu);
    match off_cpu {
        true => format!("{key}; [off-cpu]: time blocked, in samples of 1/{hz} s"),
        false => key,
    }
}

/// A colour for every label the flame graph will draw.
fn palette(profile: &Profile, options: &OutputOptions) -> PaletteMap {
    let mut palette = PaletteMap::default();
    for frame in &profile.frames {
        let label = frame_label(frame);
        let hue = match frame.kind {
            FrameKind::User => Hue::Native,
            FrameKind::Kernel => Hue::Kernel,
            FrameKind::Python => Hue::Python,
        };
        palette.insert(&label, shade(hue, &label));
    }
    if options.per_thread {
        for thread in &profile.threads {
            let label = thread_label(thread);
            palette.insert(&label, shade(Hue::Marker, &label));
        }
    }
    // inferno's root frame `all`, under everything, is the function with no name.
    palette.insert("", shade(Hue::Marker, "all"));
    palette.insert(OFF_CPU_FRAME, shade(Hue::OffCpu, OFF_CPU_FRAME));
    palette.insert(TRUNCATED_FRAME, shade(Hue::Marker, TRUNCATED_FRAME));
    palette
}

/// A shade of `hue` picked by a hash of `label`: all channels move by the same fraction
/// of their range, as in flamegraph.pl's palettes, so the hue stays and only the
/// lightness changes.
fn shade(hue: Hue, label: &str) -> Color {
    let ([r, g, b], [dr, dg, db]) = match hue {
        Hue::Native => ([200, 50, 50], [55, 80, 80]),
        Hue::Kernel => ([190, 90, 0], [65, 65, 0]),
        Hue::Python => ([50, 200, 50], [60, 55, 60]),
        Hue::OffCpu => ([80, 130, 220], [0, 0, 0]),
        Hue::Marker => ([170, 170, 170], [30, 30, 30]),
    };
    let fraction = (fnv1a(label.as_bytes()) % 256) as u16;
    let step = |base: u8, range: u8| base + (u16::from(range) * fraction / 255) as u8;
    Color {
        r: step(r, dr),
        g: step(g, dg),
        b: step(b, db),
    }
}

/// FNV-1a: a stable hash, unlike std's, so colours stay the same from run to run.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::write_svg;
    use crate::model::Profile;
    use crate::output::{fixture, OutputOptions};

    fn svg(profile: &Profile) -> String {
        let options = OutputOptions {
            per_thread: true,
            title: "python3 (pid 1000)".into(),
        };
        let mut out = Vec::new();
        write_svg(profile, &options, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The `fill` of the rectangle of the frame whose tooltip starts with `label`.
    fn fill_of(svg: &str, label: &str) -> String {
        let start = svg
            .find(&format!("<title>{label}"))
            .unwrap_or_else(|| panic!("no frame {label}"));
        let rest = &svg[start..];
        let fill = rest.find("fill=\"").unwrap() + 6;
        rest[fill..fill + rest[fill..].find('"').unwrap()].to_owned()
    }

    #[test]
    fn svg_has_every_function_and_the_header() {
        let svg = svg(&fixture::profile());
        assert!(svg.starts_with("<?xml"), "{}", &svg[..100]);
        for name in [
            "is_zipfile (zipfile/__init__.py)_[py]",
            // inferno draws kernel frames without their suffix, in their own colour.
            "<title>do_syscall_64 (30 samples",
            "hash_step",
            "libwork.so+0x1000",
            "[off-cpu]",
            "[truncated]",
            "python3 [py &quot;MainThread&quot;] tid 1000",
            "python3 (pid 1000) — 1.0 s, 60 samples, 3 lost",
        ] {
            assert!(svg.contains(name), "{name} missing");
        }
    }

    #[test]
    fn native_kernel_and_python_frames_have_distinct_hues() {
        let svg = svg(&fixture::profile());
        let rgb = |label: &str| -> Vec<u8> {
            let fill = fill_of(&svg, label);
            let inner = fill.trim_start_matches("rgb(").trim_end_matches(')');
            inner.split(',').map(|c| c.parse().unwrap()).collect()
        };
        let native = rgb("__open64");
        let kernel = rgb("do_syscall_64 (");
        let python = rgb("find_zip (find_zip.py)_[py]");
        // Red has blue, orange has none; green is the largest channel only in Python.
        assert!(native[0] >= 200 && native[2] >= 50, "{native:?}");
        assert!(kernel[0] >= 190 && kernel[2] == 0, "{kernel:?}");
        assert!(python[1] > python[0] && python[1] > python[2], "{python:?}");
    }

    #[test]
    fn long_titles_are_one_shortened_line() {
        use super::shorten;
        let mut profile = fixture::profile();
        profile
            .threads
            .iter_mut()
            .for_each(|t| t.samples.truncate(2));
        let options = OutputOptions {
            per_thread: false,
            title: format!("command: python3 -c \nimport os\n{}", "x".repeat(200)),
        };
        let mut out = Vec::new();
        write_svg(&profile, &options, &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        // Newlines became spaces; 90 characters of the target are left.
        let title = format!("command: python3 -c  import os {}… — 1.0 s", "x".repeat(59));
        assert!(svg.contains(&title), "no {title:?}");
        assert!(
            !svg.contains("[off-cpu]"),
            "no off-CPU samples, no key for them"
        );
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcd", 3), "abc…");
    }

    #[test]
    fn an_empty_profile_is_an_svg_that_says_so() {
        let options = OutputOptions {
            title: "pid 1 (<idle> & co)".to_owned(),
            ..OutputOptions::default()
        };
        let mut out = Vec::new();
        write_svg(&Profile::default(), &options, &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        assert!(svg.contains("no samples: nothing in scope ran"), "{svg}");
        assert!(svg.contains("pid 1 (&lt;idle&gt; &amp; co)"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
    }
}
