//! Profile files: a symbolized [`Profile`] written as a folded-stacks text file, an
//! interactive SVG flame graph, a speedscope JSON file or a gzipped pprof protobuf.
//!
//! Every format names frames the same way ([`frame_label`]): kernel frames end in `_[k]`,
//! Python frames in `_[py]`, unnamed frames are `module+0xoffset`. Stacks the unwinder did
//! not finish get an outermost `[truncated]` frame, and off-CPU samples (the stack a thread
//! blocked with) sit under an `[off-cpu]` root frame, except in pprof, where they are a
//! sample type of their own. No other frame is ever added.

mod folded;
mod label;
mod pprof;
mod speedscope;
mod svg;

#[cfg(test)]
pub(crate) mod fixture;

use std::io::{self, Write};
use std::path::Path;

use crate::model::{Profile, SampleKind, StackSamples, ThreadProfile};

pub use folded::write_folded;
pub use label::{frame_label, one_line, thread_label};
pub use pprof::write_pprof;
pub use speedscope::write_speedscope;
pub use svg::write_svg;

/// The root frame of off-CPU samples.
pub const OFF_CPU_FRAME: &str = "[off-cpu]";
/// The outermost frame of a stack whose unwinding stopped before the thread's entry point.
pub const TRUNCATED_FRAME: &str = "[truncated]";

/// A profile file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Brendan Gregg's folded stacks: `root;...;leaf count`, one line per stack.
    Folded,
    /// An interactive flame graph (search, zoom), drawn by inferno.
    Svg,
    /// speedscope's JSON file format, one profile per thread.
    Speedscope,
    /// pprof's gzipped protobuf, as `go tool pprof`, Parca and Grafana read it.
    Pprof,
}

impl Format {
    /// Every format, in the order a help text lists them.
    pub const ALL: [Format; 4] = [
        Format::Svg,
        Format::Folded,
        Format::Speedscope,
        Format::Pprof,
    ];

    /// The format a file name asks for, by its extension: `.svg`, `.folded` or `.txt`,
    /// `.speedscope.json`, `.pb.gz` or `.pprof`.
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        [
            (".speedscope.json", Format::Speedscope),
            (".pb.gz", Format::Pprof),
            (".pprof", Format::Pprof),
            (".svg", Format::Svg),
            (".folded", Format::Folded),
            (".txt", Format::Folded),
        ]
        .into_iter()
        .find_map(|(suffix, format)| name.ends_with(suffix).then_some(format))
    }

    /// The extension for files of this format, without the leading dot.
    pub fn default_extension(self) -> &'static str {
        match self {
            Format::Folded => "folded",
            Format::Svg => "svg",
            Format::Speedscope => "speedscope.json",
            Format::Pprof => "pb.gz",
        }
    }
}

/// How to write a profile file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputOptions {
    /// One root frame per thread (folded, SVG) or one profile per thread (speedscope),
    /// so that threads are not merged. pprof always labels samples with their thread.
    pub per_thread: bool,
    /// What was profiled (`python3 (pid 1234)`, say): the SVG's title, the speedscope
    /// file's name, a pprof comment.
    pub title: String,
}

/// Writes `profile` to `out` in `format`.
pub fn write(
    format: Format,
    profile: &Profile,
    options: &OutputOptions,
    out: &mut dyn Write,
) -> io::Result<()> {
    match format {
        Format::Folded => write_folded(profile, options, out),
        Format::Svg => write_svg(profile, options, out),
        Format::Speedscope => write_speedscope(profile, options, out),
        Format::Pprof => write_pprof(profile, options, out),
    }
}

/// One sampling period in nanoseconds (1 s / frequency); 1 ms when the frequency is
/// unknown, so that off-CPU time still converts to something.
pub fn period_ns(profile: &Profile) -> u64 {
    match profile.frequency_hz {
        0 => 1_000_000,
        hz => 1_000_000_000 / hz,
    }
}

/// Frame labels of one sample, outermost first: `root` (a thread's label, say), then
/// `[off-cpu]` for off-CPU samples, `[truncated]` for a truncated stack, and the stack's
/// frames. `labels` holds the label of every frame of `profile`, by frame id.
fn sample_path<'a>(
    profile: &Profile,
    labels: &'a [String],
    root: Option<&'a str>,
    sample: &StackSamples,
) -> Vec<&'a str> {
    let mut path: Vec<&str> = root.into_iter().collect();
    if sample.kind == SampleKind::OffCpu {
        path.push(OFF_CPU_FRAME);
    }
    if profile.stack_truncated(sample.stack) {
        path.push(TRUNCATED_FRAME);
    }
    if let Some(stack) = profile.stacks.get(sample.stack as usize) {
        let frames = stack.frames.iter().rev();
        path.extend(frames.filter_map(|&id| labels.get(id as usize).map(String::as_str)));
    }
    path
}

/// Every sample of `profile` with the thread it belongs to.
fn samples(profile: &Profile) -> impl Iterator<Item = (&ThreadProfile, &StackSamples)> {
    profile
        .threads
        .iter()
        .flat_map(|thread| thread.samples.iter().map(move |sample| (thread, sample)))
}

/// The label of every frame of `profile`, by frame id.
fn frame_labels(profile: &Profile) -> Vec<String> {
    profile.frames.iter().map(frame_label).collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::Format;

    #[test]
    fn formats_come_from_extensions() {
        let cases = [
            ("out.svg", Some(Format::Svg)),
            ("a/b.folded", Some(Format::Folded)),
            ("stacks.txt", Some(Format::Folded)),
            ("x.speedscope.json", Some(Format::Speedscope)),
            ("cpu.pb.gz", Some(Format::Pprof)),
            ("CPU.PPROF", Some(Format::Pprof)),
            ("x.json", None),
            ("svg", None),
        ];
        for (path, format) in cases {
            assert_eq!(Format::from_path(Path::new(path)), format, "{path}");
        }
    }

    #[test]
    fn default_extensions_round_trip() {
        for format in [
            Format::Folded,
            Format::Svg,
            Format::Speedscope,
            Format::Pprof,
        ] {
            let name = format!("profile.{}", format.default_extension());
            assert_eq!(Format::from_path(Path::new(&name)), Some(format));
        }
    }
}
