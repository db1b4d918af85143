//! gdb as an outside reference for native stacks: it unwinds a live thread with the DWARF
//! call frame information (`.eh_frame`, `.debug_frame`) and names its frames from the
//! symbol tables and debug info, frame pointers or not, so its backtrace is what a table
//! unwinder should find.
//!
//! `cargo xtask test` installs it (Debian's `gdb`, see xtask/src/peers.rs). gdb attaches
//! with ptrace, which stops the process for the second or so it takes; it detaches when
//! done. A missing gdb, or one not allowed to attach (not root under Yama's
//! `ptrace_scope`), skips the check with a message, except under `CI=true`, where it
//! fails. A gdb that ran but did not show the thread panics with what it printed.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// How long one gdb run may take: attaching reads the symbols and debug info of every
/// loaded object (libpython's take a few seconds).
const GDB_LIMIT: Duration = Duration::from_secs(120);

/// Commands before attaching: no downloads of debug info (the backtrace is what this
/// machine has), argument values left out (they hold `(`, ` at `, strings: nothing the
/// frame lines need), no scripts of the debugged program.
const GDB_SETUP: [&str; 3] = [
    "set debuginfod enabled off",
    "set print frame-arguments none",
    "set auto-load python-scripts off",
];

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// `None` after saying why the check is skipped; under `CI=true`, a panic instead.
fn skip<T>(why: &str) -> Option<T> {
    assert!(!ci(), "CI=true but {why}");
    eprintln!("skipping: {why}");
    None
}

/// One frame of a gdb backtrace line (`#3  0x... in level3 (...) at deep_omit_fp.c:40`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GdbFrame {
    /// The function's name; `??` when gdb has none, `<signal handler called>` for a
    /// signal frame.
    pub function: String,
    /// The shared object gdb found no debug info for (`from /lib/.../libz.so.1`).
    pub library: Option<String>,
    /// The source location with debug info (`at ./Modules/zlibmodule.c:377`).
    pub source: Option<String>,
}

/// The function names of thread `tid`'s frames in gdb's backtrace of process `pid`,
/// innermost first (`??` where gdb has no name). `None` when skipped (see the module).
pub fn gdb_backtrace(pid: u32, tid: u32) -> Option<Vec<String>> {
    let frames = gdb_frames(pid, tid)?;
    Some(frames.into_iter().map(|frame| frame.function).collect())
}

/// Thread `tid`'s frames in gdb's backtrace of process `pid`, innermost first. `None` when
/// skipped (see the module).
pub fn gdb_frames(pid: u32, tid: u32) -> Option<Vec<GdbFrame>> {
    let gdb = gdb()?;
    let mut command = Command::new(gdb);
    command.args(["-batch", "-nx"]);
    for setting in GDB_SETUP {
        command.args(["-iex", setting]);
    }
    command
        .args(["-p", &pid.to_string(), "-ex", "thread apply all bt"])
        .env("LC_ALL", "C");
    let output = crate::peers::run_bounded(&mut command, GDB_LIMIT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if let Some(frames) = thread_backtrace(&stdout, tid) {
        return Some(frames);
    }
    if stderr.contains("ptrace: Operation not permitted") {
        return skip(&format!(
            "gdb may not attach to process {pid} (needs root or kernel.yama.ptrace_scope=0)"
        ));
    }
    panic!(
        "gdb showed no backtrace of thread {tid} of process {pid} ({}):\n\
         stdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
}

/// `/usr/bin/gdb`, else gdb on PATH; `None` when skipped.
fn gdb() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("gdb"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    std::iter::once(PathBuf::from("/usr/bin/gdb"))
        .chain(on_path)
        .find(|path| path.is_file())
        .or_else(|| skip("gdb is missing (`cargo xtask test` installs it)"))
}

/// The frames under the `Thread N (Thread 0x... (LWP <tid>) "name"):` header of a
/// `thread apply all bt` output (a process without threads has `(process <pid>)`
/// instead: then `tid` is the pid). `None` when the thread is not there or has no frames.
fn thread_backtrace(output: &str, tid: u32) -> Option<Vec<GdbFrame>> {
    let lwp = format!("(LWP {tid})");
    let process = format!("(process {tid})");
    let mut lines = output.lines();
    lines.find(|line| {
        line.starts_with("Thread ") && (line.contains(&lwp) || line.contains(&process))
    })?;
    let frames: Vec<GdbFrame> = lines
        .take_while(|line| !line.is_empty() && !line.starts_with("Thread "))
        .filter_map(parse_frame)
        .collect();
    (!frames.is_empty()).then_some(frames)
}

/// Parses one frame line of a backtrace:
/// `#N  [0xADDR in ]FUNCTION (ARGS)[ at FILE:LINE| from LIBRARY]`, or
/// `#N  <signal handler called>`. Other lines (`Backtrace stopped: ...`) are not frames.
fn parse_frame(line: &str) -> Option<GdbFrame> {
    let rest = line.strip_prefix('#')?;
    let (number, rest) = rest.split_once(char::is_whitespace)?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut rest = rest.trim_start();
    if rest.starts_with("0x") {
        rest = rest.split_once(" in ").map_or(rest, |(_, after)| after);
    }
    if rest.starts_with("<signal handler called>") {
        return Some(GdbFrame {
            function: "<signal handler called>".to_owned(),
            library: None,
            source: None,
        });
    }
    let (function, args) = rest.split_once(" (")?;
    let library = args
        .rsplit_once(") from ")
        .map(|(_, library)| library.to_owned());
    let source = args
        .rsplit_once(") at ")
        .map(|(_, source)| source.to_owned());
    Some(GdbFrame {
        function: function.to_owned(),
        library,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
[New LWP 26404]
[Thread debugging using libthread_db enabled]
__GI___libc_read (...) at ../sysdeps/unix/sysv/linux/read.c:26
26\t../sysdeps/unix/sysv/linux/read.c: No such file or directory.

Thread 2 (Thread 0x7fe6c69c46c0 (LWP 26404) \"deep\"):
#0  0x0000556360b2c2fd in level5 () at /w/deep_omit_fp.c:29
#1  0x0000556360b2c345 in level4 () at /w/deep_omit_fp.c:35
#2  0x00007fac23b9e935 in ?? () from /lib/x86_64-linux-gnu/libz.so.1
#3  0x00007fac23bbe7d3 in zlib_compress_impl (...) at ./Modules/zlibmodule.c:377
#4  zlib_compress (...) at ./Modules/clinic/zlibmodule.c.h:93
#5  <signal handler called>
#6  0x00007fe6c6ad18ec in clone3 () at ../sysdeps/unix/sysv/linux/x86_64/clone3.S:81

Thread 1 (Thread 0x7fe6c69c5740 (LWP 26403) \"nofp\"):
#0  __GI___libc_read (...) at ../sysdeps/unix/sysv/linux/read.c:26
#1  0x0000556360b2c1bf in wait_stdin_eof () at /w/common.h:46
[Inferior 1 (process 26403) detached]
";

    fn names(frames: &[GdbFrame]) -> Vec<&str> {
        frames.iter().map(|f| f.function.as_str()).collect()
    }

    #[test]
    fn picks_the_thread_by_lwp() {
        let frames = thread_backtrace(OUTPUT, 26404).unwrap();
        assert_eq!(
            names(&frames),
            [
                "level5",
                "level4",
                "??",
                "zlib_compress_impl",
                "zlib_compress",
                "<signal handler called>",
                "clone3"
            ]
        );
        assert_eq!(
            frames[2].library.as_deref(),
            Some("/lib/x86_64-linux-gnu/libz.so.1")
        );
        assert_eq!(frames[2].source, None);
        assert_eq!(
            frames[4].source.as_deref(),
            Some("./Modules/clinic/zlibmodule.c.h:93")
        );
        let main = thread_backtrace(OUTPUT, 26403).unwrap();
        assert_eq!(names(&main), ["__GI___libc_read", "wait_stdin_eof"]);
        assert_eq!(thread_backtrace(OUTPUT, 1), None);
    }

    #[test]
    fn frames_with_arguments_and_without_names() {
        let frame = parse_frame(
            "#10 0x00007f in thread_run (boot_raw=0x55) at ./Modules/_threadmodule.c:1114",
        )
        .unwrap();
        assert_eq!(frame.function, "thread_run");
        assert_eq!(
            frame.source.as_deref(),
            Some("./Modules/_threadmodule.c:1114")
        );
        let frame =
            parse_frame("#3  0x00007fac23b9509c in deflate () from /lib/libz.so.1").unwrap();
        assert_eq!(
            (frame.function.as_str(), frame.library.as_deref()),
            ("deflate", Some("/lib/libz.so.1"))
        );
        assert_eq!(parse_frame("Backtrace stopped: previous frame inner"), None);
        assert_eq!(parse_frame("#x foo ()"), None);
    }
}
