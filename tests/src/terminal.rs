//! probe with its stderr on a pseudo-terminal, where it shows a status line once its window
//! is open (`probe: recording, 0 s, 12 samples, 0 lost (Ctrl-C ends early)`): the readiness
//! signal for tests that interrupt a recording, which need probe attached and sampling
//! before they send the signal.

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::probe::probe_bin;
use crate::workload::prioritize;

/// How long probe may take to load, attach and show its status line, or to finish once
/// signalled, before the test gives up on it.
const TERMINAL_LIMIT: Duration = Duration::from_secs(60);

/// A running probe whose stderr is a terminal. Dropped before [`ProbeOnTerminal::finish`]
/// (a test that panicked), it kills probe by its pid and reaps it.
pub struct ProbeOnTerminal {
    child: Option<Child>,
    pid: u32,
    /// Chunks of what probe wrote to the terminal, until it closes.
    chunks: mpsc::Receiver<String>,
    /// Everything read so far.
    text: String,
}

/// What probe left when it exited.
pub struct TerminalExit {
    pub status: ExitStatus,
    /// Everything it wrote on the terminal (status lines, messages).
    pub terminal: String,
    pub stdout: String,
}

impl ProbeOnTerminal {
    /// Starts probe with `args`, stdout piped and stderr on a new pseudo-terminal.
    pub fn start(args: &[&str]) -> ProbeOnTerminal {
        let (master, slave) = open_pty();
        let mut command = Command::new(probe_bin());
        prioritize(&mut command);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(slave));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start probe {args:?}: {e}"));
        // The slave's last copy in this process: closed, the master reads EIO once probe
        // (and anything it started) has exited.
        drop(command);
        let (send, chunks) = mpsc::channel();
        std::thread::spawn(move || read_terminal(File::from(master), send));
        ProbeOnTerminal {
            pid: child.id(),
            child: Some(child),
            chunks,
            text: String::new(),
        }
    }

    /// probe's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits until the status line says at least `samples` samples were recorded.
    pub fn wait_for_samples(&mut self, samples: u64) {
        while latest_samples(&self.text).is_none_or(|seen| seen < samples) {
            match self.chunks.recv_timeout(TERMINAL_LIMIT) {
                Ok(chunk) => self.text.push_str(&chunk),
                Err(_) => panic!(
                    "probe showed no status line with {samples} samples within \
                     {TERMINAL_LIMIT:?}; its terminal:\n{}",
                    self.text
                ),
            }
        }
    }

    /// Sends `signal` to probe, by its pid.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
        unsafe { libc::kill(pid, signal) };
    }

    /// Waits for probe to exit (killing it by pid after [`TERMINAL_LIMIT`]).
    pub fn finish(mut self) -> TerminalExit {
        loop {
            match self.chunks.recv_timeout(TERMINAL_LIMIT) {
                Ok(chunk) => self.text.push_str(&chunk),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.signal(libc::SIGKILL);
                    panic!(
                        "probe did not exit within {TERMINAL_LIMIT:?}; its terminal:\n{}",
                        self.text
                    );
                }
            }
        }
        let child = self.child.take().expect("finish runs once");
        let output = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("failed to wait for probe: {e}"));
        TerminalExit {
            status: output.status,
            terminal: std::mem::take(&mut self.text),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        }
    }
}

impl Drop for ProbeOnTerminal {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // By pid: Child::kill sends SIGKILL to this child only.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The sample count of the last complete status line in `text`.
fn latest_samples(text: &str) -> Option<u64> {
    text.rsplit("probe: recording, ").find_map(|line| {
        let (before, _) = line.split_once(" samples, ")?;
        before.rsplit(", ").next()?.parse().ok()
    })
}

/// Sends what the terminal shows, chunk by chunk, until it reads end-of-file or EIO (the
/// last slave descriptor closed).
fn read_terminal(mut master: File, send: mpsc::Sender<String>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = master.read(&mut buf) {
        if n == 0
            || send
                .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                .is_err()
        {
            break;
        }
    }
}

/// A new pseudo-terminal: (master, slave), neither of them this process's controlling
/// terminal.
fn open_pty() -> (OwnedFd, OwnedFd) {
    let fail = |what: &str| -> ! { panic!("{what}: {}", std::io::Error::last_os_error()) };
    // SAFETY: posix_openpt has no memory preconditions; the descriptor it returns is new.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if master < 0 {
        fail("posix_openpt");
    }
    // SAFETY: `master` was just created and is owned by nobody else.
    let master_fd = unsafe { OwnedFd::from_raw_fd(master) };
    // SAFETY: plain calls on a valid pty master descriptor.
    if unsafe { libc::grantpt(master) } != 0 || unsafe { libc::unlockpt(master) } != 0 {
        fail("grantpt/unlockpt");
    }
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: `name` has room for `name.len()` bytes, which ptsname_r never exceeds.
    if unsafe { libc::ptsname_r(master, name.as_mut_ptr(), name.len()) } != 0 {
        fail("ptsname_r");
    }
    // SAFETY: ptsname_r wrote a NUL-terminated path into `name`.
    let slave = unsafe {
        libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        fail("open pty slave");
    }
    // SAFETY: `slave` was just opened and is owned by nobody else.
    (master_fd, unsafe { OwnedFd::from_raw_fd(slave) })
}

#[cfg(test)]
mod tests {
    use super::latest_samples;

    #[test]
    fn status_lines_give_their_sample_counts() {
        let text = "\r\x1b[Kprobe: recording, 0 s, 3 samples, 0 lost (Ctrl-C ends early)\
                    \r\x1b[Kprobe: recording, 1 s, 120 samples, 2 lost (Ctrl-C ends early)";
        assert_eq!(latest_samples(text), Some(120));
        assert_eq!(latest_samples("\r\x1b[Kprobe: recording, 0 s, 1"), None);
        assert_eq!(latest_samples(""), None);
    }
}
