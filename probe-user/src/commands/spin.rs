//! `probe spin`: which threads burn CPU, over one window, with syscall counts.

use std::{io::Write, time::Instant};

use anyhow::Context as _;

use super::{name_kernel_frames, runtime, stop_signal};
use crate::cli::SpinOptions;
use crate::collect::{self, ObserveOptions};
use crate::loader::{LoadOptions, Probe, ProgramSet};
use crate::model::Recording;
use crate::{preflight, python, report, symbolize};

/// Observes for the window and prints the spin report.
pub fn run(options: &SpinOptions, started: Instant) -> anyhow::Result<()> {
    preflight::check(&options.pids)?;
    let report_options = report::SpinOptions {
        threshold_pct: options.threshold_pct,
        top: options.top,
    };
    let (recording, attached, window_start_ns, kernel_names) = runtime()?.block_on(async {
        // Registered before loading: a Ctrl-C while attaching ends the window at once and
        // still prints a (partial, marked) report.
        let stop = stop_signal();
        let mut probe = Probe::load(&LoadOptions {
            pids: options.pids.clone(),
            filter_pids: false,
            frequency_hz: options.frequency_hz,
            programs: ProgramSet {
                unwind_tables: !options.frame_pointers_only,
                ..ProgramSet::SPIN
            },
        })?;
        let attached = started.elapsed();
        let observe = ObserveOptions {
            duration: Some(options.duration),
            frequency_hz: options.frequency_hz,
            target_pids: options.pids.clone(),
            count_syscalls: true,
            status: "observing",
        };
        let recording = collect::observe(&mut probe, &observe, stop).await?;
        if let Some(path) = &options.dump_python_frames {
            dump_python_frames(&recording, path)?;
        }
        let recording = keep_stacks_of_shown_threads(recording, &report_options);
        let window_start_ns = probe.window_start_ns;
        let kernel_names = name_kernel_frames(&recording, probe);
        anyhow::Ok((recording, attached, window_start_ns, kernel_names))
    })?;
    if options.self_stats {
        let stats = serde_json::json!({
            "attach_secs": attached.as_secs_f64(),
            // CLOCK_MONOTONIC, to line the window up with a workload's own clock.
            "window_start_ns": window_start_ns,
            "window_end_ns": window_start_ns + recording.window.duration_ns,
            "programs": recording.program_stats,
            "kernel_names": kernel_names.describe(),
            "unwind": recording.unwind,
        });
        crate::diag!("{stats}");
    }
    let profile = symbolize::symbolize_with(recording, kernel_names);
    let report = report::analyze(&profile, &report_options);
    let text = if options.json {
        report::render_json(&report)
    } else {
        report::render_text(&report)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("failed to write the report to stdout")
}

/// Writes the dump next to `path` and renames it into place: never a half-written file.
fn dump_python_frames(recording: &Recording, path: &std::path::Path) -> anyhow::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(".partial.{}", std::process::id()));
    let partial = std::path::PathBuf::from(partial);
    let written = std::fs::File::create(&partial)
        .and_then(|file| python::dump::write(recording, &mut std::io::BufWriter::new(file)))
        .and_then(|()| std::fs::rename(&partial, path));
    if let Err(err) = written {
        // Nothing useful is left behind; the error below says what happened.
        let _ = std::fs::remove_file(&partial);
        return Err(err).with_context(|| format!("failed to write {}", path.display()));
    }
    Ok(())
}

/// Drops the stacks of threads the report will not describe, so only those get symbolized.
fn keep_stacks_of_shown_threads(
    mut recording: Recording,
    options: &report::SpinOptions,
) -> Recording {
    let on_cpu = recording.threads.values().map(|t| (t.tid, t.on_cpu_ns));
    let shown = report::shown_tids(on_cpu, recording.window.duration_ns, options);
    for thread in recording.threads.values_mut() {
        if !shown.contains(&thread.tid) {
            thread.stacks.clear();
        }
    }
    recording
}
