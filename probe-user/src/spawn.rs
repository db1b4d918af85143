//! Starting the command `probe record -- COMMAND` records, held before it runs: the child
//! is forked, waits on a pipe until its pid is in the kernel's filter, and only then execs,
//! so its first instruction, and every process it forks, is observed. Under sudo it runs as
//! the user who invoked sudo, with their groups.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// Why the command could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("the command's argument {0:?} holds a NUL byte")]
    Nul(OsString),
    #[error("failed to start the command: {0}")]
    Fork(std::io::Error),
    #[error("failed to run `{command}`: {source}")]
    Exec {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

/// Who the command runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<libc::gid_t>,
}

impl Credentials {
    /// The user who ran `sudo probe ...` (SUDO_UID, SUDO_GID, SUDO_USER's groups), when
    /// probe runs as root under sudo; `None` otherwise (the command runs as probe does).
    pub fn invoking_user() -> Option<Credentials> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let id = |name| std::env::var(name).ok()?.parse::<u32>().ok();
        let (uid, gid) = (id("SUDO_UID")?, id("SUDO_GID")?);
        if uid == 0 {
            return None;
        }
        let user = std::env::var_os("SUDO_USER").and_then(|u| CString::new(u.as_bytes()).ok());
        let groups = user
            .map(|user| group_list(&user, gid))
            .unwrap_or_else(|| vec![gid]);
        Some(Credentials { uid, gid, groups })
    }
}

/// `user`'s groups, `gid` included.
fn group_list(user: &CString, gid: u32) -> Vec<libc::gid_t> {
    let mut groups: Vec<libc::gid_t> = vec![0; 256];
    let mut count = groups.len() as libc::c_int;
    // SAFETY: `user` is NUL-terminated, `groups` holds `count` entries, and getgrouplist
    // writes at most that many (it returns -1 and the needed count when they don't fit).
    let found = unsafe { libc::getgrouplist(user.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
    if found < 0 {
        return vec![gid];
    }
    groups.truncate(count.max(0) as usize);
    groups
}

/// A forked command waiting to run; dropped without [`Held::release`], it exits (127)
/// without running.
#[derive(Debug)]
pub struct Held {
    pid: u32,
    command: String,
    /// Writing a byte lets the child exec.
    gate: OwnedFd,
    /// Closed by a successful exec; the child writes its errno here when exec fails.
    exec_errors: OwnedFd,
}

/// Forks the command, held before its exec.
pub fn spawn_held(
    argv: &[OsString],
    credentials: Option<&Credentials>,
) -> Result<Held, SpawnError> {
    let args: Vec<CString> = argv
        .iter()
        .map(|arg| CString::new(arg.as_bytes()).map_err(|_| SpawnError::Nul(arg.clone())))
        .collect::<Result<_, _>>()?;
    let mut pointers: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    pointers.push(std::ptr::null());
    let (gate_read, gate_write) = pipe().map_err(SpawnError::Fork)?;
    let (errors_read, errors_write) = pipe().map_err(SpawnError::Fork)?;
    // SAFETY: fork has no preconditions. The child only makes async-signal-safe calls
    // (read, write, setgroups, setgid, setuid, execvp, _exit) on memory prepared above, so
    // it is sound even if other threads held locks at the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SpawnError::Fork(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above; the pointers are valid (owned by `args`, `pointers`,
        // `credentials`), and this never returns.
        unsafe {
            // The parent's ends: held open here, the gate would never read end-of-file
            // when probe goes away without releasing.
            libc::close(gate_write.as_raw_fd());
            libc::close(errors_read.as_raw_fd());
            run_child(
                gate_read.as_raw_fd(),
                errors_write.as_raw_fd(),
                &pointers,
                credentials,
            )
        }
    }
    drop((gate_read, errors_write));
    Ok(Held {
        pid: pid as u32,
        command: argv
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default(),
        gate: gate_write,
        exec_errors: errors_read,
    })
}

/// The child's side: wait for the gate, drop privileges, exec.
///
/// # Safety
/// Only in the child of a fork; `argv` is a NULL-terminated array of C strings.
unsafe fn run_child(
    gate: libc::c_int,
    errors: libc::c_int,
    argv: &[*const libc::c_char],
    credentials: Option<&Credentials>,
) -> ! {
    let fail = |errno: libc::c_int| -> ! {
        let bytes = errno.to_ne_bytes();
        // SAFETY: `errors` is open; `bytes` lives through the call; _exit never returns.
        unsafe {
            libc::write(errors, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127)
        }
    };
    let mut byte = 0u8;
    // SAFETY: a one-byte read into a local.
    if unsafe { libc::read(gate, (&mut byte as *mut u8).cast(), 1) } != 1 {
        // probe went away without releasing: don't run unobserved.
        // SAFETY: _exit never returns.
        unsafe { libc::_exit(127) }
    }
    if let Some(c) = credentials {
        // SAFETY: `groups` holds `len` gids; these calls only read their arguments.
        let dropped = unsafe {
            libc::setgroups(c.groups.len(), c.groups.as_ptr()) == 0
                && libc::setgid(c.gid) == 0
                && libc::setuid(c.uid) == 0
        };
        if !dropped {
            fail(errno());
        }
    }
    // SAFETY: `argv` is NULL-terminated (the caller's contract); execvp returns only on
    // failure.
    unsafe { libc::execvp(argv[0], argv.as_ptr()) };
    fail(errno())
}

fn errno() -> libc::c_int {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL)
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Held {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Lets the command run; returns once it has exec'd (or says why it could not).
    pub fn release(self) -> Result<Running, SpawnError> {
        let byte = [1u8];
        // SAFETY: a one-byte write from a local to an open pipe.
        unsafe { libc::write(self.gate.as_raw_fd(), byte.as_ptr().cast(), 1) };
        drop(self.gate);
        let mut errno = [0u8; 4];
        let mut got = 0;
        while got < errno.len() {
            // SAFETY: reads into the rest of a local buffer.
            let n = unsafe {
                libc::read(
                    self.exec_errors.as_raw_fd(),
                    errno[got..].as_mut_ptr().cast(),
                    errno.len() - got,
                )
            };
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            if n <= 0 {
                break;
            }
            got += n as usize;
        }
        let running = Running { pid: self.pid };
        if got == errno.len() {
            let source = std::io::Error::from_raw_os_error(i32::from_ne_bytes(errno));
            // It has exited (127); reap it.
            let _ = running.wait_blocking();
            return Err(SpawnError::Exec {
                command: self.command,
                source,
            });
        }
        Ok(running)
    }
}

/// A command that runs.
#[derive(Clone, Copy, Debug)]
pub struct Running {
    pid: u32,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for it to exit: its exit code, or 128 + the signal that ended it (as shells
    /// report it).
    pub fn wait_blocking(&self) -> std::io::Result<i32> {
        let mut status = 0;
        loop {
            // SAFETY: `status` is a valid out-pointer; the pid is our child.
            let reaped = unsafe { libc::waitpid(self.pid as i32, &mut status, 0) };
            if reaped >= 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        Ok(if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        })
    }

    /// Sends `signal` to it (Ctrl-C forwarded); an exited command is not an error.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill has no memory preconditions; the pid is our (possibly exited,
        // not yet reaped, so not reused) child.
        let _ = unsafe { libc::kill(self.pid as i32, signal) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(Into::into).collect()
    }

    #[test]
    fn runs_only_when_released_and_gives_its_exit_code() {
        let held = spawn_held(&argv(&["sh", "-c", "exit 7"]), None).unwrap();
        let running = held.release().unwrap();
        assert_eq!(running.wait_blocking().unwrap(), 7);
    }

    #[test]
    fn a_command_that_cannot_run_says_why() {
        let held = spawn_held(&argv(&["/nonexistent/command"]), None).unwrap();
        let err = held.release().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("failed to run `/nonexistent/command`: No such file"),
            "{err}"
        );
        let nul = spawn_held(&[OsString::from("a\0b")], None).unwrap_err();
        assert!(matches!(nul, SpawnError::Nul(_)));
    }

    #[test]
    fn dropped_without_release_it_never_runs() {
        let marker = std::env::temp_dir().join(format!("probe-spawn-{}", std::process::id()));
        let script = format!("touch {}", marker.display());
        let held = spawn_held(&argv(&["sh", "-c", &script]), None).unwrap();
        let pid = held.pid();
        drop(held);
        let running = Running { pid };
        assert_eq!(running.wait_blocking().unwrap(), 127);
        assert!(!marker.exists());
    }

    #[test]
    fn signals_reach_it() {
        let running = spawn_held(&argv(&["sleep", "30"]), None)
            .unwrap()
            .release()
            .unwrap();
        running.signal(libc::SIGINT);
        assert_eq!(running.wait_blocking().unwrap(), 128 + libc::SIGINT);
    }
}
