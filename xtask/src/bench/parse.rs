//! Parsers of what the bench reads: a workload's output line, probe's `--self-stats` line and
//! report, and fields of /proc files.

/// One workload run's figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Rate {
    /// Iterations per wall-clock second: what the observer costs the workload.
    pub(super) wall: f64,
    /// Iterations per on-CPU second: the same without the CPU time other load took from the
    /// workload (the observer's kernel programs run on the workload's time, so they count).
    pub(super) cpu: f64,
    /// Share of the wall time the workload spent on a CPU.
    pub(super) on_cpu: f64,
}

/// A workload's one output line, `iterations=<n> secs=<elapsed> cpu_secs=<on-CPU>`.
pub(super) fn parse_rate(output: &str) -> Option<Rate> {
    let (mut iterations, mut secs, mut cpu_secs) = (None, None, None);
    for field in output.split_whitespace() {
        let (key, value) = field.split_once('=')?;
        let value = value.parse::<f64>().ok().filter(|v| *v > 0.0);
        match key {
            "iterations" => iterations = value,
            "secs" => secs = value,
            "cpu_secs" => cpu_secs = value,
            _ => {}
        }
    }
    let (iterations, secs, cpu_secs) = (iterations?, secs?, cpu_secs?);
    Some(Rate {
        wall: iterations / secs,
        cpu: iterations / cpu_secs,
        on_cpu: cpu_secs / secs,
    })
}

/// One kernel program's totals over a probe window, from the kernel's BPF statistics.
#[derive(Debug, PartialEq)]
pub(super) struct ProgramCost {
    pub(super) program: String,
    pub(super) run_time_ns: u64,
    pub(super) run_count: u64,
}

impl ProgramCost {
    pub(super) fn ns_per_run(&self) -> Option<f64> {
        (self.run_count > 0).then(|| self.run_time_ns as f64 / self.run_count as f64)
    }
}

/// probe's `--self-stats` line.
#[derive(Debug, PartialEq)]
pub(super) struct SelfStats {
    pub(super) attach_secs: f64,
    /// The recording's length: only `probe record` prints it (spin's is in its report).
    pub(super) window_secs: Option<f64>,
    pub(super) programs: Vec<ProgramCost>,
    /// What the `.eh_frame` tables cost; `None` from a probe that does not print them.
    pub(super) unwind: Option<UnwindStats>,
}

/// The `unwind` object of `--self-stats`: building and loading the `.eh_frame` tables of the
/// processes probe sampled, over its whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct UnwindStats {
    /// The kernel unwound with tables (false under `--frame-pointers-only`).
    pub(super) enabled: bool,
    /// Processes given tables.
    pub(super) processes: u64,
    pub(super) files_compiled: u64,
    /// Bytes of `.eh_frame` / `.debug_frame` compiled, and the time compiling and loading took.
    pub(super) cfi_bytes: u64,
    pub(super) build_ns: u64,
    /// The most table rows in the kernel at once, and how many fit.
    pub(super) rows_peak: u64,
    pub(super) rows_capacity: u64,
    pub(super) files_not_fitted: u64,
    /// Samples taken before their process's tables were in the kernel (walked with frame
    /// pointers).
    pub(super) samples_before_tables: u64,
    /// The longest time from a process's first sample to its tables in the kernel.
    pub(super) tables_latency_max_ns: u64,
}

fn parse_unwind_stats(value: &serde_json::Value) -> Option<UnwindStats> {
    let count = |key: &str| value.get(key)?.as_u64();
    Some(UnwindStats {
        enabled: value.get("enabled")?.as_bool()?,
        processes: count("processes")?,
        files_compiled: count("files_compiled")?,
        cfi_bytes: count("cfi_bytes")?,
        build_ns: count("build_ns")?,
        rows_peak: count("rows_peak")?,
        rows_capacity: count("rows_capacity")?,
        files_not_fitted: count("files_not_fitted")?,
        samples_before_tables: count("samples_before_tables")?,
        tables_latency_max_ns: count("tables_latency_max_ns")?,
    })
}

/// The last JSON line with `attach_secs` in probe's stderr: attach time and program costs.
pub(super) fn parse_self_stats(stderr: &str) -> Option<SelfStats> {
    let stats = stderr
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|value| value.get("attach_secs").is_some())?;
    let programs = stats
        .get("programs")?
        .as_array()?
        .iter()
        .map(parse_program_cost)
        .collect::<Option<_>>()?;
    Some(SelfStats {
        attach_secs: stats.get("attach_secs")?.as_f64()?,
        window_secs: stats
            .get("window_secs")
            .and_then(serde_json::Value::as_f64)
            .filter(|secs| *secs > 0.0),
        programs,
        unwind: stats.get("unwind").and_then(parse_unwind_stats),
    })
}

/// What `probe record` says it wrote, from its last line `probe: wrote <path> (<n> samples
/// [, <m> off-CPU waits] over <secs> s; <lost> samples lost[, other losses])`: on-CPU
/// samples and samples lost.
pub(super) fn parse_record_summary(stderr: &str) -> Option<(u64, u64)> {
    let line = stderr
        .lines()
        .rev()
        .find(|line| line.starts_with("probe: wrote "))?;
    let (_, figures) = line.rsplit_once(" (")?;
    let (taken, lost) = figures.strip_suffix(')')?.split_once("; ")?;
    let (samples, _) = taken.split_once(" samples")?;
    let (lost, _) = lost.split_once(" samples lost")?;
    Some((samples.parse().ok()?, lost.parse().ok()?))
}

fn parse_program_cost(value: &serde_json::Value) -> Option<ProgramCost> {
    Some(ProgramCost {
        program: value.get("program")?.as_str()?.to_owned(),
        run_time_ns: value.get("run_time_ns")?.as_u64()?,
        run_count: value.get("run_count")?.as_u64()?,
    })
}

/// `probe watch`'s last event, `watch_stop`: how long it ran and, when the kernel counted
/// run time, what each of its kernel programs cost since it loaded them.
#[derive(Debug, PartialEq)]
pub(super) struct WatchStop {
    pub(super) uptime_secs: f64,
    /// `None` when the kernel did not count run time (watch_stop's `kernel_programs` null).
    pub(super) programs: Option<Vec<ProgramCost>>,
}

/// The `watch_stop` event among `probe watch`'s JSON lines, if it wrote one.
pub(super) fn parse_watch_stop(events: &str) -> Option<WatchStop> {
    let stop = events
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| {
            event.get("event").and_then(serde_json::Value::as_str) == Some("watch_stop")
        })?;
    let programs = match stop.get("kernel_programs")? {
        serde_json::Value::Null => None,
        programs => Some(
            programs
                .as_array()?
                .iter()
                .map(parse_program_cost)
                .collect::<Option<_>>()?,
        ),
    };
    Some(WatchStop {
        uptime_secs: stop.get("uptime_secs")?.as_f64()?,
        programs,
    })
}

pub(super) fn parse_window_secs(report: &str) -> Option<f64> {
    let report: serde_json::Value = serde_json::from_str(report).ok()?;
    report
        .get("window")?
        .get("duration_secs")?
        .as_f64()
        .filter(|secs| *secs > 0.0)
}

/// The number of samples in py-spy's `--format raw` output: one line per distinct stack,
/// `frame;frame;... <count>`.
pub(super) fn parse_raw_samples(raw: &str) -> u64 {
    raw.lines()
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

/// `VmHWM:  1234 kB` from /proc/PID/status: the peak resident set so far, in KiB.
pub(super) fn parse_vm_hwm_kib(status: &str) -> Option<u64> {
    status_kib(status, "VmHWM:")
}

/// `VmRSS:  1234 kB` from /proc/PID/status: the resident set now, in KiB.
pub(super) fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    status_kib(status, "VmRSS:")
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    let value = status.lines().find_map(|line| line.strip_prefix(key))?;
    value.trim().trim_end_matches("kB").trim().parse().ok()
}

/// `prog_type:\t26` from /proc/PID/fdinfo/FD of a BPF program.
pub(super) fn parse_prog_type(fdinfo: &str) -> Option<u32> {
    fdinfo_field(fdinfo, "prog_type")
}

/// What /proc/PID/fdinfo/FD says about a BPF program: which one it is, and its totals from
/// the kernel's BPF statistics (zero while `kernel.bpf_stats_enabled` is 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ProgFdinfo {
    /// `enum bpf_prog_type`: 5 tracepoint, 7 perf_event, ...
    pub(super) prog_type: u32,
    /// Unique while the program is loaded: two fds of one program have the same.
    pub(super) prog_id: u32,
    pub(super) run_time_ns: u64,
    pub(super) run_cnt: u64,
}

/// The program fields of a BPF program's fdinfo (`prog_type:`, `prog_id:`, `run_time_ns:`,
/// `run_cnt:`, as Linux has printed them since 5.1); `None` if one is missing.
pub(super) fn parse_prog_fdinfo(fdinfo: &str) -> Option<ProgFdinfo> {
    Some(ProgFdinfo {
        prog_type: fdinfo_field(fdinfo, "prog_type")?,
        prog_id: fdinfo_field(fdinfo, "prog_id")?,
        run_time_ns: fdinfo_field(fdinfo, "run_time_ns")?,
        run_cnt: fdinfo_field(fdinfo, "run_cnt")?,
    })
}

/// The value of an fdinfo line `key:\tvalue`.
fn fdinfo_field<T: std::str::FromStr>(fdinfo: &str, key: &str) -> Option<T> {
    fdinfo.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name == key).then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_stop_gives_the_uptime_and_the_programs_when_counted() {
        let events = "{\"event\":\"watch_start\",\"at\":\"x\"}\n\
            {\"event\":\"watch_stop\",\"uptime_secs\":5.25,\"kernel_programs\":\
            [{\"program\":\"sched_switch\",\"run_time_ns\":900,\"run_count\":3}]}\n";
        assert_eq!(
            parse_watch_stop(events),
            Some(WatchStop {
                uptime_secs: 5.25,
                programs: Some(vec![ProgramCost {
                    program: "sched_switch".into(),
                    run_time_ns: 900,
                    run_count: 3
                }])
            })
        );
        let uncounted = "{\"event\":\"watch_stop\",\"uptime_secs\":1.0,\"kernel_programs\":null}";
        assert_eq!(parse_watch_stop(uncounted).unwrap().programs, None);
        // Stopped before it could say so: no figures rather than made-up ones.
        assert_eq!(
            parse_watch_stop("{\"event\":\"heartbeat\"}\n{\"event\":\"wat"),
            None
        );
    }

    #[test]
    fn rates_are_iterations_over_secs() {
        let rate = parse_rate("iterations=3000 secs=2 cpu_secs=1.5\n");
        let expected = Rate {
            wall: 1500.0,
            cpu: 2000.0,
            on_cpu: 0.75,
        };
        assert_eq!(rate, Some(expected));
        assert_eq!(parse_rate("iterations=3000 secs=1.5\n"), None);
        assert_eq!(parse_rate("iterations=3000 secs=0 cpu_secs=1\n"), None);
    }

    #[test]
    fn self_stats_line_is_found_among_other_stderr() {
        let stderr = "probe: warning: something\n\
            {\"attach_secs\":0.08,\"programs\":\
            [{\"program\":\"sys_enter\",\"run_count\":4,\"run_time_ns\":200}]}\n";
        let stats = parse_self_stats(stderr).unwrap();
        assert_eq!(stats.attach_secs, 0.08);
        assert_eq!(stats.window_secs, None);
        let programs = stats.programs;
        assert_eq!(
            programs,
            [ProgramCost {
                program: "sys_enter".into(),
                run_time_ns: 200,
                run_count: 4
            }]
        );
        assert_eq!(programs[0].ns_per_run(), Some(50.0));
        assert_eq!(parse_self_stats("no stats\n"), None);
    }

    #[test]
    fn record_self_stats_carry_the_window() {
        let stderr = "{\"attach_secs\":0.05,\"window_secs\":4.52,\"programs\":[]}\n\
            probe: wrote target/bench/probe-record.svg (900 samples over 4.5 s; 0 samples lost)\n";
        let stats = parse_self_stats(stderr).unwrap();
        assert_eq!(stats.window_secs, Some(4.52));
        assert_eq!(stats.programs, []);
        assert_eq!(stats.unwind, None);
    }

    #[test]
    fn unwind_figures_come_from_their_object() {
        // As probe spin printed it on the bench machine (fields the bench does not read
        // included).
        let stderr = r#"{"attach_secs":0.07,"programs":[],"unwind":{"build_ns":35731096,
            "cfi_bytes":1335128,"enabled":true,"files_compiled":4,"files_evicted":0,
            "files_failed":0,"files_not_fitted":0,"files_without_cfi":0,
            "first_file_error":null,"map_error":null,"processes":1,
            "processes_mappings_cut":0,"processes_not_fitted":0,"rows_capacity":2097152,
            "rows_loaded":198950,"rows_peak":198950,"samples_before_tables":2,
            "tables_latency_max_ns":45894520,"tables_latency_sum_ns":45894520}}"#
            .replace('\n', "");
        let unwind = parse_self_stats(&stderr).unwrap().unwind.unwrap();
        assert_eq!(
            unwind,
            UnwindStats {
                enabled: true,
                processes: 1,
                files_compiled: 4,
                cfi_bytes: 1_335_128,
                build_ns: 35_731_096,
                rows_peak: 198_950,
                rows_capacity: 2_097_152,
                files_not_fitted: 0,
                samples_before_tables: 2,
                tables_latency_max_ns: 45_894_520,
            }
        );
        // A field missing: no figures rather than zeros.
        let cut = stderr.replace(r#""enabled":true,"#, "");
        assert_eq!(parse_self_stats(&cut).unwrap().unwind, None);
    }

    #[test]
    fn record_summary_gives_samples_and_losses() {
        let stderr = "probe: note: something\n\
            probe: wrote /tmp/a (b).svg (1803 samples over 9.1 s; 2 samples lost)\n\
            probe: note: later\n";
        assert_eq!(parse_record_summary(stderr), Some((1803, 2)));
        let off_cpu = "probe: wrote x.svg (5 samples, 7 off-CPU waits over 1.0 s; \
            3 samples lost, 1 off-CPU waits not recorded)\n";
        assert_eq!(parse_record_summary(off_cpu), Some((5, 3)));
        assert_eq!(parse_record_summary("probe: error: x\n"), None);
        assert_eq!(
            parse_record_summary("probe: wrote x (many samples)\n"),
            None
        );
    }

    #[test]
    fn window_comes_from_the_report() {
        assert_eq!(
            parse_window_secs(r#"{"window":{"duration_secs":4.5}}"#),
            Some(4.5)
        );
        assert_eq!(parse_window_secs(r#"{"window":{}}"#), None);
    }

    #[test]
    fn py_spy_samples_are_summed_over_stacks() {
        let raw = "<module> (py_loop.py:84);main (py_loop.py:78) 7\n\
                   <module> (py_loop.py:84);step (py_loop.py:26) 27\n";
        assert_eq!(parse_raw_samples(raw), 34);
        assert_eq!(parse_raw_samples(""), 0);
    }

    #[test]
    fn proc_figures_are_parsed() {
        let status = "Name:\tprobe\nVmPeak:\t  9000 kB\nVmHWM:\t    2192 kB\n";
        assert_eq!(parse_vm_hwm_kib(status), Some(2192));
        assert_eq!(parse_vm_rss_kib(status), None);
        assert_eq!(parse_vm_rss_kib("VmRSS:\t   41000 kB\n"), Some(41000));
    }

    #[test]
    fn program_type_comes_from_fdinfo() {
        let fdinfo = "pos:\t0\nflags:\t02000002\nprog_type:\t26\nprog_jited:\t1\n";
        assert_eq!(parse_prog_type(fdinfo), Some(26));
        assert_eq!(parse_prog_type("pos:\t0\n"), None);
    }

    /// bpftrace's `profile:hz:99` program as Linux 6.18 showed it on the bench machine, with
    /// `kernel.bpf_stats_enabled=1`, 3 s after bpftrace started.
    const PERF_EVENT_FDINFO: &str = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t21\n\
        prog_type:\t7\nprog_jited:\t1\nprog_tag:\t2ac447d7ba4a1dca\nmemlock:\t4096\n\
        prog_id:\t16115\nrun_time_ns:\t4982314\nrun_cnt:\t187\nrecursion_misses:\t0\n\
        verified_insns:\t41\n";

    #[test]
    fn program_totals_come_from_fdinfo() {
        assert_eq!(
            parse_prog_fdinfo(PERF_EVENT_FDINFO),
            Some(ProgFdinfo {
                prog_type: 7,
                prog_id: 16115,
                run_time_ns: 4_982_314,
                run_cnt: 187,
            })
        );
        assert_eq!(parse_prog_type(PERF_EVENT_FDINFO), Some(7));
        // Keys are whole: `run_cnt` is not read from `run_cnt_total`, say.
        let renamed = PERF_EVENT_FDINFO.replace("run_cnt:", "run_cnt_total:");
        assert_eq!(parse_prog_fdinfo(&renamed), None);
        // A map's fdinfo has no program fields.
        let map = "pos:\t0\nflags:\t02000002\nmap_type:\t1\nmap_id:\t7\n";
        assert_eq!(parse_prog_fdinfo(map), None);
    }
}
