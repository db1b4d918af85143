//! Placeholder until the output formats land: folded stacks only.

use std::io::{self, Write};
use std::path::Path;

use crate::model::{FrameKind, Profile};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Svg,
    Folded,
    Speedscope,
    Pprof,
}

impl Format {
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?;
        if name.ends_with(".folded") || name.ends_with(".txt") {
            return Some(Format::Folded);
        }
        None
    }

    pub fn default_extension(self) -> &'static str {
        "folded"
    }
}

pub struct OutputOptions {
    pub per_thread: bool,
    pub title: String,
}

pub fn write(
    _format: Format,
    profile: &Profile,
    _options: &OutputOptions,
    out: &mut dyn Write,
) -> io::Result<()> {
    for thread in &profile.threads {
        for samples in &thread.samples {
            let mut names: Vec<String> = profile
                .stack_frames(samples.stack)
                .map(|f| {
                    let name = f
                        .function
                        .clone()
                        .unwrap_or_else(|| format!("{}+{:#x}", f.module, f.module_offset));
                    match f.kind {
                        FrameKind::Kernel => format!("{name}_[k]"),
                        _ => name,
                    }
                })
                .collect();
            names.reverse();
            writeln!(out, "{} {}", names.join(";"), samples.count)?;
        }
    }
    Ok(())
}
