//! The peers' own kernel programs, read in the same runs as probe's, so that their costs per
//! run compare under identical conditions. Only bpftrace has any: perf record samples through
//! the kernel's perf events and py-spy reads the process from outside, neither with BPF.

use std::{fs, time::Duration};

use anyhow::{bail, Context as _, Result};

use super::{
    machine::{bpf_program_fdinfos, BPF_STATS},
    parse::{parse_prog_fdinfo, ProgFdinfo, ProgramCost},
    sample::KernelPrograms,
};

/// bpftrace's `profile:hz:99` program: the counterpart of probe's `sample_stack`.
pub(super) const STACK_SAMPLE: &str = "stack sample";
/// bpftrace's `tracepoint:raw_syscalls:sys_enter` program: the counterpart of probe's.
pub(super) const SYS_ENTER: &str = "sys_enter";

/// `enum bpf_prog_type`: `tracepoint:` probes load this type.
const BPF_PROG_TYPE_TRACEPOINT: u32 = 5;
/// `enum bpf_prog_type`: `profile:` probes load this type, one program attached to every
/// CPU's perf event.
const BPF_PROG_TYPE_PERF_EVENT: u32 = 7;

/// The totals so far of the BPF programs held by `pid`, a running bpftrace that started
/// `running_for` ago: its window. Its programs count from when it loaded them, a little
/// after it started, so the rates over that window are slightly low.
pub(super) fn read_bpftrace_programs(
    pid: libc::pid_t,
    running_for: Duration,
) -> Result<KernelPrograms> {
    // The bench enables the statistics for its whole length (see `BpfStats`); if something
    // turned them off meanwhile, the totals cover only part of the window.
    let enabled =
        fs::read_to_string(BPF_STATS).with_context(|| format!("failed to read {BPF_STATS}"))?;
    if enabled.trim() != "1" {
        bail!(
            "kernel.bpf_stats_enabled was {} when bpftrace's programs were read",
            enabled.trim()
        );
    }
    let paths = bpf_program_fdinfos(pid)
        .with_context(|| format!("failed to list the file descriptors of bpftrace ({pid})"))?;
    let infos = paths
        .iter()
        .map(|path| {
            let fdinfo = fs::read_to_string(path)
                .with_context(|| format!("failed to read {}", path.display()))?;
            parse_prog_fdinfo(&fdinfo)
                .with_context(|| format!("no program totals in {}", path.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let programs = label_programs(&infos);
    if programs.is_empty() {
        bail!(
            "none of the {} BPF programs bpftrace ({pid}) held had run",
            infos.len()
        );
    }
    Ok(KernelPrograms {
        window_secs: running_for.as_secs_f64(),
        programs,
    })
}

/// bpftrace's programs by what they do: each program once (two fds can hold one), those
/// that never ran left out (BEGIN and END probes, say), and those of one label summed.
pub(super) fn label_programs(infos: &[ProgFdinfo]) -> Vec<ProgramCost> {
    let mut seen = Vec::new();
    let mut programs: Vec<ProgramCost> = Vec::new();
    for info in infos {
        if info.run_cnt == 0 || seen.contains(&info.prog_id) {
            continue;
        }
        seen.push(info.prog_id);
        let label = label(info.prog_type);
        match programs.iter_mut().find(|cost| cost.program == label) {
            Some(cost) => {
                cost.run_time_ns += info.run_time_ns;
                cost.run_count += info.run_cnt;
            }
            None => programs.push(ProgramCost {
                program: label,
                run_time_ns: info.run_time_ns,
                run_count: info.run_cnt,
            }),
        }
    }
    programs
}

/// What the bench's bpftrace program loads each type for; anything else by its type.
fn label(prog_type: u32) -> String {
    match prog_type {
        BPF_PROG_TYPE_PERF_EVENT => STACK_SAMPLE.into(),
        BPF_PROG_TYPE_TRACEPOINT => SYS_ENTER.into(),
        other => format!("prog_type {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(prog_type: u32, prog_id: u32, run_time_ns: u64, run_cnt: u64) -> ProgFdinfo {
        ProgFdinfo {
            prog_type,
            prog_id,
            run_time_ns,
            run_cnt,
        }
    }

    fn cost(program: &str, run_time_ns: u64, run_count: u64) -> ProgramCost {
        ProgramCost {
            program: program.into(),
            run_time_ns,
            run_count,
        }
    }

    #[test]
    fn programs_are_labelled_by_type() {
        let infos = [
            prog(7, 16115, 4_982_314, 187),
            prog(5, 16116, 670_030_215, 4_420_337),
            // A uprobe (BEGIN) that ran once, and one that never ran.
            prog(2, 16117, 900, 1),
            prog(2, 16118, 0, 0),
        ];
        assert_eq!(
            label_programs(&infos),
            [
                cost(STACK_SAMPLE, 4_982_314, 187),
                cost(SYS_ENTER, 670_030_215, 4_420_337),
                cost("prog_type 2", 900, 1),
            ]
        );
    }

    #[test]
    fn a_program_held_twice_counts_once_and_kinds_add_up() {
        let infos = [prog(5, 1, 300, 3), prog(5, 1, 300, 3), prog(5, 2, 100, 1)];
        assert_eq!(label_programs(&infos), [cost(SYS_ENTER, 400, 4)]);
        assert_eq!(label_programs(&[prog(7, 3, 0, 0)]), []);
    }
}
