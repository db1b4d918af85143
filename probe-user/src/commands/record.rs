//! `probe record`: stacks of processes, a command or the whole machine, into a profile
//! file (flamegraph SVG, folded stacks, speedscope, pprof).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{name_kernel_frames, runtime, stop_signal};
use crate::cli::{FormatArg, RecordOptions, RecordTarget};
use crate::collect::{self, EndReason, ObserveOptions};
use crate::loader::{LoadOptions, Probe, ProgramSet};
use crate::model::{Profile, Recording, SampleKind};
use crate::output::{self, Format, OutputOptions};
use crate::output_file::OutputFile;
use crate::spawn::{self, Credentials, Running};
use crate::{preflight, symbolize};

/// How long a command that got a forwarded Ctrl-C may take to exit before probe leaves it
/// running and exits itself.
const COMMAND_EXIT_GRACE: Duration = Duration::from_secs(5);

/// Records, writes the file, and returns the exit code: the command's own in spawn mode.
/// `started` is when probe started, for `--self-stats`' time to attach.
pub fn run(options: &RecordOptions, started: Instant) -> anyhow::Result<i32> {
    let pids = match &options.target {
        RecordTarget::Pids(pids) => pids.clone(),
        RecordTarget::All | RecordTarget::Command(_) => Vec::new(),
    };
    preflight::check(&pids)?;
    let format = pick_format(options.format, options.output.as_deref());
    let path = options
        .output
        .clone()
        .unwrap_or_else(|| default_path(&options.target, format));
    // Before anything is attached: an hour of recording is never lost to a typo.
    let output = OutputFile::prepare(&path)?;
    let runtime = runtime()?;
    let recorded = runtime.block_on(record(options, &pids, started));
    // Not waiting for the thread that waits for a command left running.
    runtime.shutdown_background();
    let (profile, exit_code) = recorded?;
    let title = title(&options.target, &profile);
    let output_options = OutputOptions {
        per_thread: options.per_thread,
        title,
    };
    output
        .commit(|out| output::write(format, &profile, &output_options, out))
        .context("failed to write the recording")?;
    summary(&path, &profile);
    Ok(exit_code.unwrap_or(0))
}

/// Observes until the duration, a signal, or the command's exit; the symbolized profile
/// and, in spawn mode, the command's exit code.
async fn record(
    options: &RecordOptions,
    pids: &[u32],
    started: Instant,
) -> anyhow::Result<(Profile, Option<i32>)> {
    let stop = stop_signal();
    let spawning = matches!(options.target, RecordTarget::Command(_));
    let held = match &options.target {
        RecordTarget::Command(argv) => Some(spawn::spawn_held(
            argv,
            Credentials::invoking_user().as_ref(),
        )?),
        _ => None,
    };
    let mut probe = Probe::load(&LoadOptions {
        pids: pids.to_vec(),
        filter_pids: spawning,
        frequency_hz: options.frequency_hz,
        programs: ProgramSet {
            syscalls: false,
            follow_forks: spawning,
            off_cpu: options.off_cpu,
            unwind_tables: !options.frame_pointers_only,
            watch: false,
            profile_all: false,
        },
    })?;
    let mut command = match held {
        Some(held) => {
            probe.add_target(held.pid())?;
            Some(CommandWatch::new(held.release()?))
        }
        None => None,
    };
    let attached = started.elapsed();
    let observe = ObserveOptions {
        duration: options.duration,
        frequency_hz: options.frequency_hz,
        target_pids: match &command {
            Some(command) => vec![command.running.pid()],
            None => pids.to_vec(),
        },
        count_syscalls: false,
        status: "recording",
    };
    let until = ends(stop, command.as_mut());
    let recording = collect::observe(&mut probe, &observe, until).await?;
    if options.self_stats {
        print_self_stats(&recording, attached);
    }
    let kernel_names = name_kernel_frames(&recording, probe);
    let exit_code = match command {
        Some(command) => Some(command.exit_code().await),
        None => None,
    };
    Ok((
        symbolize::symbolize_with(recording, kernel_names),
        exit_code,
    ))
}

/// `--self-stats`: one JSON line on stderr, as `probe spin` prints it, plus the recording's
/// length (spin's is in its report; record's file formats do not all carry it).
fn print_self_stats(recording: &Recording, attached: Duration) {
    let stats = serde_json::json!({
        "attach_secs": attached.as_secs_f64(),
        "window_secs": recording.window.duration_ns as f64 / 1e9,
        "programs": recording.program_stats,
        "unwind": recording.unwind,
    });
    crate::diag!("{stats}");
}

/// The spawned command, and the one wait for its exit (a second `waitpid` on the same
/// child would race the first for its status).
struct CommandWatch {
    running: Running,
    exit: tokio::task::JoinHandle<std::io::Result<i32>>,
    /// Its exit code, once it exited.
    code: Option<i32>,
}

impl CommandWatch {
    fn new(running: Running) -> CommandWatch {
        CommandWatch {
            running,
            exit: tokio::task::spawn_blocking(move || running.wait_blocking()),
            code: None,
        }
    }

    /// The command's exit code: known if it exited, else waited for (it got the signal),
    /// at most [`COMMAND_EXIT_GRACE`]; a command still running then is left running, and
    /// probe exits as an interrupted program does (130).
    async fn exit_code(mut self) -> i32 {
        if let Some(code) = self.code {
            return code;
        }
        match tokio::time::timeout(COMMAND_EXIT_GRACE, &mut self.exit).await {
            Ok(Ok(Ok(code))) => code,
            _ => {
                crate::diag!(
                    "probe: the command (pid {}) is still running; probe leaves it running",
                    self.running.pid()
                );
                130
            }
        }
    }
}

/// The end of a recording: a signal (passed on to the command, if any), or the command's
/// exit (whose code is kept in `command`).
async fn ends(
    stop: impl std::future::Future<Output = EndReason>,
    command: Option<&mut CommandWatch>,
) -> EndReason {
    let Some(command) = command else {
        return stop.await;
    };
    tokio::select! {
        reason = stop => {
            match reason.as_deref() {
                Some("SIGTERM") => command.running.signal(libc::SIGTERM),
                // Ctrl-C on the terminal already reached the command (it is in the
                // terminal's foreground process group, with probe): only an interrupt sent
                // to probe alone is passed on.
                _ if !ctrl_c_reaches_the_command() => command.running.signal(libc::SIGINT),
                _ => {}
            }
            reason
        }
        code = &mut command.exit => {
            // A failed wait (never expected for our own child) reads as a failure.
            command.code = Some(code.ok().and_then(Result::ok).unwrap_or(1));
            None
        }
    }
}

/// Whether a Ctrl-C typed on probe's terminal reaches the command too: probe's process
/// group (which the command shares) is the terminal's foreground group.
fn ctrl_c_reaches_the_command() -> bool {
    // SAFETY: tcgetpgrp and getpgrp only read process state; a non-terminal stdin makes
    // tcgetpgrp fail (-1), which is not our group.
    unsafe { libc::tcgetpgrp(libc::STDIN_FILENO) == libc::getpgrp() }
}

fn pick_format(format: Option<FormatArg>, path: Option<&Path>) -> Format {
    match format {
        Some(FormatArg::Svg) => Format::Svg,
        Some(FormatArg::Folded) => Format::Folded,
        Some(FormatArg::Speedscope) => Format::Speedscope,
        Some(FormatArg::Pprof) => Format::Pprof,
        None => path.and_then(Format::from_path).unwrap_or(Format::Svg),
    }
}

/// `probe-<pid>.svg`, `probe-<command>.svg` or `probe-all.svg` in the current directory.
fn default_path(target: &RecordTarget, format: Format) -> PathBuf {
    let name = match target {
        RecordTarget::Pids(pids) => pids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join("-"),
        RecordTarget::All => "all".to_owned(),
        RecordTarget::Command(argv) => argv
            .first()
            .map(|arg| Path::new(arg).file_name().unwrap_or(arg.as_os_str()))
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    PathBuf::from(format!("probe-{name}.{}", format.default_extension()))
}

/// What was recorded, for the output's title: the target, and a partial mark.
fn title(target: &RecordTarget, profile: &Profile) -> String {
    let target = match target {
        RecordTarget::Pids(pids) => {
            let named: Vec<String> = pids
                .iter()
                .map(|pid| match profile.processes.get(pid) {
                    Some(p) if !p.name.is_empty() => format!("pid {pid} ({})", p.name),
                    _ => format!("pid {pid}"),
                })
                .collect();
            named.join(", ")
        }
        RecordTarget::All => "all processes".to_owned(),
        RecordTarget::Command(argv) => {
            let words: Vec<String> = argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            format!("command: {}", words.join(" "))
        }
    };
    match &profile.window.interrupted_by {
        Some(by) => format!("{target} (partial: ended by {by})"),
        None => target,
    }
}

/// One line on stderr: where the file is, what it holds and what was lost; then the
/// notices.
fn summary(path: &Path, profile: &Profile) {
    let count = |kind: SampleKind| -> u64 {
        let samples = profile.threads.iter().flat_map(|t| &t.samples);
        samples.filter(|s| s.kind == kind).map(|s| s.count).sum()
    };
    let loss = &profile.loss;
    let mut lost = format!("{} samples lost", loss.samples_lost);
    if loss.off_cpu_dropped > 0 {
        lost.push_str(&format!(
            ", {} off-CPU waits not recorded",
            loss.off_cpu_dropped
        ));
    }
    if loss.targets_dropped > 0 {
        lost.push_str(&format!(
            ", {} child processes not followed",
            loss.targets_dropped
        ));
    }
    let off_cpu = match count(SampleKind::OffCpu) {
        0 => String::new(),
        waits => format!(", {waits} off-CPU waits"),
    };
    crate::diag!(
        "probe: wrote {} ({} samples{off_cpu} over {:.1} s; {lost})",
        path.display(),
        count(SampleKind::OnCpu),
        profile.window.duration_ns as f64 / 1e9,
    );
    for notice in &profile.notices {
        crate::diag!("probe: note: {notice}");
    }
}
