use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::model::{StackStats, Window};
use crate::procmaps::{MappedFile, Module};
use crate::report::StackCount;

extern "C" {
    /// The executable's entry point (from crt1.o): a real thread root to end stacks in.
    fn _start();
}

/// Big enough that a few bytes past its start are still inside it.
#[inline(never)]
fn hot_loop(n: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..std::hint::black_box(n) {
        acc = acc.wrapping_mul(31).wrapping_add(i ^ 0x5a5a);
    }
    acc
}

#[inline(never)]
fn caller() -> u64 {
    hot_loop(std::hint::black_box(3)) + 1
}

fn addr_of(f: fn() -> u64) -> u64 {
    f as usize as u64
}

fn hot_loop_addr() -> u64 {
    hot_loop as fn(u64) -> u64 as usize as u64
}

fn entry_addr() -> u64 {
    _start as unsafe extern "C" fn() as usize as u64
}

/// A return address inside `caller` and one inside `_start`.
fn outer_frames() -> Vec<u64> {
    vec![addr_of(caller) + 4, entry_addr() + 1]
}

fn recording(pid: u32, stacks: Vec<(RawStack, u64)>) -> Recording {
    let mut recording = Recording {
        window: Window {
            requested_ns: 5,
            duration_ns: 4,
            interrupted: true,
            interrupted_by: Some("Ctrl-C".to_owned()),
        },
        frequency_hz: 99,
        notices: vec!["earlier notice".to_owned()],
        ..Recording::default()
    };
    let maps = ProcessMaps::capture(pid).expect("capture self");
    recording.resources.process_maps.insert((pid, 0), maps);
    recording.threads.insert(pid, thread(pid, stacks));
    recording
}

fn thread(pid: u32, stacks: Vec<(RawStack, u64)>) -> ThreadRecord {
    ThreadRecord {
        tid: pid,
        pid,
        name: "worker".to_owned(),
        syscalls: BTreeMap::from([(0, 3), (1, 2)]),
        stacks: stacks
            .into_iter()
            .map(|(stack, count)| {
                let stats = StackStats {
                    count,
                    ..StackStats::default()
                };
                (stack, stats)
            })
            .collect::<HashMap<_, _>>(),
        ..ThreadRecord::default()
    }
}

fn user(addrs: Vec<u64>) -> RawStack {
    RawStack {
        user: addrs,
        ..RawStack::default()
    }
}

/// The thread's stacks merged by function, as the spin report sees them.
fn stacks(profile: &Profile, thread: usize) -> Vec<StackCount> {
    crate::report::merged_stacks(profile, &profile.threads[thread])
}

fn function(frame: &Frame) -> &str {
    frame.function.as_deref().unwrap_or("<none>")
}

#[test]
fn names_functions_of_the_test_binary() {
    let pid = std::process::id();
    let addrs = [vec![hot_loop_addr()], outer_frames()].concat();
    let profile = symbolize(recording(pid, vec![(user(addrs), 7)]));
    let stacks = stacks(&profile, 0);
    assert_eq!(stacks.len(), 1);
    let stack = &stacks[0];
    let names: Vec<&str> = stack.frames.iter().map(function).collect();
    assert!(names[0].ends_with("hot_loop"), "{names:?}");
    assert!(names[1].ends_with("caller"), "{names:?}");
    assert_eq!(*names.last().expect("frames"), "_start", "{names:?}");
    assert!(!stack.truncated, "{stack:#?}");
    assert_eq!(stack.count, 7);
    assert_eq!(stack.frames[0].kind, FrameKind::User);
    let exe = std::env::current_exe().expect("current_exe");
    let exe_name = exe.file_name().and_then(|n| n.to_str()).expect("exe name");
    assert_eq!(stack.frames[0].module, exe_name);
    // The real address's offset, not the looked-up one.
    let maps = ProcessMaps::capture(pid).expect("capture self");
    let caller_offset = maps.lookup(addr_of(caller) + 4).expect("caller").offset;
    assert_eq!(stack.frames[1].module_offset, caller_offset);
}

#[test]
fn one_stack_is_named_on_its_own() {
    let pid = std::process::id();
    let addrs = [vec![hot_loop_addr()], outer_frames()].concat();
    let maps = ProcessMaps::capture(pid).expect("capture self");
    // No kernel frames, so no kernel names are needed.
    let names = KernelNames::kallsyms(Err(std::io::Error::other("not read")), None);
    let (frames, truncated) = symbolize_stack(pid, user(addrs), maps, names);
    let names: Vec<&str> = frames.iter().map(function).collect();
    assert!(names[0].ends_with("hot_loop"), "{names:?}");
    assert!(names[1].ends_with("caller"), "{names:?}");
    assert_eq!(*names.last().expect("frames"), "_start", "{names:?}");
    assert!(!truncated, "{frames:#?}");
}

#[test]
fn copies_everything_else() {
    let pid = std::process::id();
    let profile = symbolize(recording(pid, vec![(user(vec![hot_loop_addr()]), 1)]));
    assert_eq!(profile.window.duration_ns, 4);
    assert!(profile.window.interrupted);
    assert_eq!(profile.frequency_hz, 99);
    assert_eq!(profile.notices, vec!["earlier notice".to_owned()]);
    let thread = &profile.threads[0];
    assert_eq!(thread.name, "worker");
    let mut syscalls = thread.syscalls.clone();
    syscalls.sort_unstable();
    assert_eq!(syscalls, vec![(0, 3), (1, 2)]);
}

#[test]
fn stack_stops_at_an_unmapped_address() {
    let pid = std::process::id();
    let addrs = vec![hot_loop_addr(), addr_of(caller) + 4, 0x10, entry_addr() + 1];
    let profile = symbolize(recording(pid, vec![(user(addrs), 1)]));
    let stack = &stacks(&profile, 0)[0];
    assert!(stack.truncated);
    let names: Vec<&str> = stack.frames.iter().map(function).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[1].ends_with("caller"), "{names:?}");
}

#[test]
fn stack_not_ending_at_an_entry_point_is_truncated() {
    let pid = std::process::id();
    let addrs = vec![hot_loop_addr(), addr_of(caller) + 4];
    let profile = symbolize(recording(pid, vec![(user(addrs), 1)]));
    assert!(stacks(&profile, 0)[0].truncated);
}

#[test]
fn depth_limit_and_user_error_truncate() {
    let pid = std::process::id();
    let mut deep = vec![hot_loop_addr()];
    deep.extend(std::iter::repeat_n(
        addr_of(caller) + 4,
        MAX_STACK_DEPTH - 2,
    ));
    deep.push(entry_addr() + 1);
    let failed = RawStack {
        user_error: true,
        ..RawStack::default()
    };
    let profile = symbolize(recording(pid, vec![(user(deep), 1), (failed, 1)]));
    let stacks = &stacks(&profile, 0);
    assert_eq!(stacks.len(), 2);
    assert!(stacks.iter().all(|s| s.truncated), "{stacks:#?}");
}

#[test]
fn samples_in_one_function_merge() {
    let pid = std::process::id();
    let at = |delta: u64| user([vec![hot_loop_addr() + delta], outer_frames()].concat());
    let profile = symbolize(recording(pid, vec![(at(0), 2), (at(4), 5)]));
    let stacks = &stacks(&profile, 0);
    assert_eq!(stacks.len(), 1, "{stacks:#?}");
    assert_eq!(stacks[0].count, 7);
    // The representative is the hotter raw stack.
    let maps = ProcessMaps::capture(pid).expect("capture self");
    let hot_offset = maps.lookup(hot_loop_addr() + 4).expect("hot_loop").offset;
    assert_eq!(stacks[0].frames[0].module_offset, hot_offset);
}

#[test]
fn vanished_process_gets_unknown_frames_and_one_notice() {
    let gone = u32::MAX - 1;
    let mut recording = Recording::default();
    for tid in [gone, gone - 1] {
        let mut thread = thread(gone, vec![(user(vec![0x401000, 0x402000]), 1)]);
        thread.tid = tid;
        recording.threads.insert(tid, thread);
    }
    let profile = symbolize(recording);
    assert_eq!(profile.notices.len(), 1, "{:?}", profile.notices);
    for i in 0..profile.threads.len() {
        let stack = &stacks(&profile, i)[0];
        assert!(stack.truncated);
        assert_eq!(stack.frames.len(), 2);
        assert!(stack.frames.iter().all(|f| f.module == UNKNOWN_MODULE));
        assert_eq!(stack.frames[0].module_offset, 0x401000);
    }
}

#[test]
fn vdso_frames_are_attributed() {
    let pid = std::process::id();
    let Some(start) = procmaps::own_vdso_start() else {
        println!("skipped: no vDSO mapped");
        return;
    };
    let profile = symbolize(recording(pid, vec![(user(vec![start + 0x10]), 1)]));
    let stack = &stacks(&profile, 0)[0];
    assert_eq!(stack.frames[0].module, "[vdso]");
    assert_eq!(stack.frames[0].module_offset, 0x10);
}

/// All names kallsyms gives `wanted`'s address, and that address; `None` without
/// privileges (every address reads 0).
fn kallsyms_entry(wanted: &str) -> Option<(u64, Vec<String>)> {
    let text = std::fs::read_to_string("/proc/kallsyms").expect("read kallsyms");
    let parse = |line: &str| {
        let mut fields = line.split_whitespace();
        let addr = u64::from_str_radix(fields.next()?, 16).ok()?;
        let name = fields.nth(1)?.to_owned();
        Some((addr, name))
    };
    let symbols: Vec<(u64, String)> = text.lines().filter_map(parse).collect();
    let addr = symbols.iter().find(|(_, name)| name == wanted)?.0;
    let names = symbols.into_iter().filter(|(a, _)| *a == addr);
    (addr != 0).then(|| (addr, names.map(|(_, name)| name).collect()))
}

#[test]
fn kernel_frames_come_first_and_are_named() {
    let Some((addr, names)) = kallsyms_entry("vfs_read") else {
        println!("skipped: /proc/kallsyms shows no addresses (not root)");
        return;
    };
    let pid = std::process::id();
    let raw = RawStack {
        kernel: vec![addr + 1, addr + 2],
        ..user([vec![hot_loop_addr()], outer_frames()].concat())
    };
    let profile = symbolize(recording(pid, vec![(raw, 1)]));
    let stack = stacks(&profile, 0).remove(0);
    let frames = &stack.frames;
    assert_eq!(frames[0].kind, FrameKind::Kernel);
    assert!(
        names.iter().any(|n| n == function(&frames[0])),
        "{frames:#?}"
    );
    assert_eq!(frames[0].module, KERNEL_MODULE);
    assert_eq!(frames[0].module_offset, addr + 1);
    assert_eq!(frames[2].kind, FrameKind::User);
    assert!(function(&frames[2]).ends_with("hot_loop"));
}

#[test]
fn kernel_addresses_below_every_symbol_are_unnamed() {
    if kallsyms_entry("vfs_read").is_none() {
        println!("skipped: /proc/kallsyms shows no addresses (not root)");
        return;
    }
    let pid = std::process::id();
    let raw = RawStack {
        kernel: vec![0x1000],
        ..user(vec![hot_loop_addr()])
    };
    let profile = symbolize(recording(pid, vec![(raw, 1)]));
    let stack = stacks(&profile, 0).remove(0);
    let frame = &stack.frames[0];
    assert_eq!(frame.kind, FrameKind::Kernel);
    assert_eq!(frame.function, None, "{frame:?}");
    assert_eq!(frame.module, KERNEL_MODULE);
    assert!(profile.notices.iter().all(|n| !n.contains("kernel")));
}

/// Virtual addresses of `names` in the symbol table of `elf`.
fn symbol_addrs(elf: &Path, names: &[&str]) -> Vec<u64> {
    use blazesym::inspect::{source, Inspector};
    let src = source::Source::Elf(source::Elf {
        debug_syms: false,
        ..source::Elf::new(elf)
    });
    let inspector = Inspector::new();
    let found = inspector.lookup(&src, names).expect("inspect");
    let first = |syms: &Vec<blazesym::inspect::SymInfo<'_>>| syms.first().expect("symbol").addr;
    found.iter().map(first).collect()
}

#[test]
fn stripped_libc_is_named_from_its_debug_file_without_lines() {
    let libc = crate::elf::mapped_libc_path();
    let file_source::FileSource::DebugFile { path: debug, .. } = file_source::file_source(&libc)
    else {
        println!("skipped: no separate debug file for {}", libc.display());
        return;
    };
    // `syscall` is exported; `__libc_start_call_main` is static, only in the debug file's
    // symbol table.
    let vaddrs = symbol_addrs(&debug, &["syscall", "__libc_start_call_main"]);
    let syscall_addr = libc::syscall as *const () as usize as u64;
    let bias = syscall_addr - vaddrs[0];
    let pid = std::process::id();
    let addrs = vec![syscall_addr + 4, bias + vaddrs[1] + 8];
    let profile = symbolize(recording(pid, vec![(user(addrs), 1)]));
    let stack = stacks(&profile, 0).remove(0);
    let frames = &stack.frames;
    let names: Vec<&str> = frames.iter().map(function).collect();
    assert_eq!(names, ["syscall", "__libc_start_call_main"], "{frames:#?}");
    let libc_name = libc.file_name().and_then(|n| n.to_str()).expect("name");
    for frame in frames {
        assert_eq!(frame.module, libc_name);
        assert_eq!((&frame.file, frame.line), (&None, None), "{frame:?}");
    }
    assert_eq!(profile.notices, vec!["earlier notice".to_owned()]);
}

#[test]
fn unreadable_symbols_give_unnamed_frames_and_one_notice() {
    let not_elf = std::env::temp_dir().join(format!("probe-not-elf-{}", std::process::id()));
    std::fs::write(&not_elf, b"not an ELF file").expect("write");
    let file = Arc::new(MappedFile::open(&not_elf).expect("open"));
    std::fs::remove_file(&not_elf).expect("remove");
    let maps = ProcessMaps::from_mappings(vec![
        (
            0x1000..0x2000,
            0x3000,
            Module::new("bad.so", Backing::File(Ok(file))),
        ),
        (
            0x2000..0x3000,
            0,
            Module::new("gone.so", Backing::File(Err("EACCES".into()))),
        ),
    ]);
    let pid = 1;
    let mut recording = Recording::default();
    recording.resources.process_maps.insert((pid, 0), maps);
    let raw = vec![(user(vec![0x1010, 0x1021]), 1), (user(vec![0x2010]), 1)];
    recording.threads.insert(pid, thread(pid, raw));
    let profile = symbolize(recording);
    assert_eq!(profile.notices.len(), 2, "{:?}", profile.notices);
    let stacks = stacks(&profile, 0);
    let frames: Vec<&Frame> = stacks.iter().flat_map(|s| &s.frames).collect();
    assert_eq!(frames.len(), 3);
    assert!(frames.iter().all(|f| f.function.is_none()));
    let offsets: BTreeSet<(&str, u64)> = frames
        .iter()
        .map(|f| (f.module.as_str(), f.module_offset))
        .collect();
    let expected = [("bad.so", 0x3010), ("bad.so", 0x3021), ("gone.so", 0x10)];
    assert_eq!(offsets, BTreeSet::from(expected));
}

const HELPER_READY: &str = "probe-helper-ready";

/// Run by [`names_survive_exit_and_deletion`] in a copy of this binary: prints that it is
/// ready and blocks until stdin closes.
#[test]
#[ignore = "helper process, started by another test"]
fn helper_blocks_on_stdin() {
    if std::env::var_os("PROBE_SYMBOLIZE_HELPER").is_none() {
        return;
    }
    // libtest prints "test NAME ... " before this on the same line.
    println!("{HELPER_READY} {}", hot_loop(1));
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
}

/// Address of `hot_loop` in process `pid` running binary `exe`, from its maps.
fn hot_loop_in(pid: u32, exe: &std::path::Path) -> u64 {
    let own = ProcessMaps::capture(std::process::id()).expect("capture self");
    let offset = own.lookup(hot_loop_addr()).expect("own hot_loop").offset;
    let maps = crate::procmaps::MapsFile::read(pid).expect("maps");
    let code = maps
        .lines()
        .filter(|line| line.exec && line.file_path() == Some(exe));
    for line in code {
        let (start, end, pgoff) = (line.start, line.end, line.offset);
        if (pgoff..pgoff + (end - start)).contains(&offset) {
            return start + offset - pgoff;
        }
    }
    panic!("{exe:?} has no code mapping for {offset:#x} in process {pid}");
}

#[test]
fn names_survive_exit_and_deletion() {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};

    let exe = std::env::temp_dir().join(format!("probe-helper-{}", std::process::id()));
    std::fs::copy(std::env::current_exe().expect("current_exe"), &exe).expect("copy");
    let mut child = Command::new(&exe)
        .args(["--exact", "symbolize::tests::helper_blocks_on_stdin"])
        .args(["--ignored", "--nocapture", "--test-threads=1"])
        .env("PROBE_SYMBOLIZE_HELPER", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn helper");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    assert!(lines.any(|l| l.expect("read").contains(HELPER_READY)));

    let pid = child.id();
    let maps = ProcessMaps::capture(pid).expect("capture helper");
    let addr = hot_loop_in(pid, &exe);
    drop(child.stdin.take());
    child.wait().expect("wait");
    std::fs::remove_file(&exe).expect("remove copy");

    let mut recording = Recording::default();
    recording.resources.process_maps.insert((pid, 0), maps);
    recording
        .threads
        .insert(pid, thread(pid, vec![(user(vec![addr]), 1)]));
    let profile = symbolize(recording);
    let stack = stacks(&profile, 0).remove(0);
    let frame = &stack.frames[0];
    assert!(function(frame).ends_with("hot_loop"), "{frame:?}");
    assert_eq!(frame.module, format!("probe-helper-{}", std::process::id()));
    assert!(profile.notices.is_empty(), "{:?}", profile.notices);
}

#[test]
fn parses_proc_modules() {
    let line = "ext4 1003520 2 - Live 0xffffffffc0a00000";
    let module = parse_module_line(line).expect("parse");
    assert_eq!(&*module.name, "ext4");
    assert_eq!(
        module.range,
        0xffffffffc0a00000..0xffffffffc0a00000 + 1003520
    );
    // Without privileges the address reads 0: no range is better than a wrong one.
    assert!(parse_module_line("ext4 1003520 2 - Live 0x0000000000000000").is_none());
}

#[test]
fn entry_points() {
    for name in [
        "_start",
        "start_thread",
        "__clone3",
        "clone",
        "__libc_start_call_main",
    ] {
        assert!(is_entry_point(name), "{name}");
    }
    assert!(!is_entry_point("main"));
}

#[test]
fn printed_symbol_names() {
    assert_eq!(printed_symbol_name(b"vfs_read"), Some(&b"vfs_read"[..]));
    assert_eq!(
        printed_symbol_name(b"e1000_xmit [e1000]"),
        Some(&b"e1000_xmit"[..])
    );
    assert_eq!(printed_symbol_name(b"0xffffffffc0001000"), None);
    assert_eq!(printed_symbol_name(b""), None);
    assert_eq!(printed_symbol_name(b" [mod]"), None);
}

/// A recording whose one stack has `kernel` frames above a user frame.
fn kernel_recording(kernel: Vec<u64>) -> Recording {
    let raw = RawStack {
        kernel,
        ..user(vec![hot_loop_addr()])
    };
    recording(std::process::id(), vec![(raw, 1)])
}

#[test]
fn looked_up_kernel_names_name_frames() {
    let recording = kernel_recording(vec![0x1000, 0x2001, 0x3001]);
    let mut asked = Vec::new();
    let names = KernelNames::look_up(&recording, |addrs| {
        asked = addrs.to_vec();
        let printed: [&[u8]; 3] = [b"do_thing", b"0x2000", b"mod_fn [some_mod]"];
        Ok::<_, String>(printed.iter().map(|p| Some(p.to_vec())).collect())
    });
    // Return addresses (all but the innermost) are looked up one byte back.
    assert_eq!(asked, [0x1000, 0x2000, 0x3000]);
    assert_eq!(names.describe(), "kernel lookup");
    let profile = symbolize_with(recording, names);
    let stack = stacks(&profile, 0).remove(0);
    let frames = &stack.frames;
    let kernel: Vec<Option<&str>> = frames[..3].iter().map(|f| f.function.as_deref()).collect();
    assert_eq!(kernel, [Some("do_thing"), None, Some("mod_fn")]);
    assert!(frames[..3].iter().all(|f| f.kind == FrameKind::Kernel));
}

#[test]
fn failed_kernel_lookup_falls_back_to_kallsyms() {
    let recording = kernel_recording(vec![0x1000]);
    let names = KernelNames::look_up(&recording, |_| Err("no BPF here"));
    assert_eq!(
        names.describe(),
        "/proc/kallsyms (the kernel lookup failed: no BPF here)"
    );
    let short = KernelNames::look_up(&recording, |_| Ok::<_, String>(Vec::new()));
    assert!(
        short.describe().contains("0 names for 1 addresses"),
        "{}",
        short.describe()
    );
}

#[test]
fn no_kernel_frames_need_no_lookup() {
    let recording = recording(std::process::id(), vec![(user(vec![hot_loop_addr()]), 1)]);
    let names = KernelNames::look_up(&recording, |_| -> Result<_, String> {
        panic!("nothing to look up")
    });
    assert_eq!(names.describe(), "kernel lookup");
}
