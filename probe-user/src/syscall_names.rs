//! Syscall names for the architecture probe runs on, from the `syscalls` crate (generated
//! from the kernel's syscall tables), never typed by hand.

use std::borrow::Cow;

/// The name of syscall `nr`, or `syscall_<nr>` when the table has none.
pub fn name(nr: u32) -> Cow<'static, str> {
    match syscalls::Sysno::new(nr as usize) {
        Some(sysno) => Cow::Borrowed(sysno.name()),
        None => Cow::Owned(format!("syscall_{nr}")),
    }
}

/// Syscalls that wait for file descriptors: a thread at full CPU making thousands of these
/// a second is in a poll storm (a wait that never waits).
pub fn is_poll_family(nr: u32) -> bool {
    matches!(
        name(nr).as_ref(),
        "poll" | "ppoll" | "select" | "pselect6" | "epoll_wait" | "epoll_pwait" | "epoll_pwait2"
    )
}

/// What the argument of a syscall that tells most about a storm of it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyArg {
    /// A path, argument `index` (a user pointer to a string).
    Path(usize),
    /// A file descriptor, the first argument.
    Fd,
    /// A futex word's address, the first argument.
    Futex,
}

/// The key argument of syscall `nr`, for the ones that have one worth showing.
pub fn key_arg(nr: u32) -> Option<KeyArg> {
    let name = name(nr);
    let path = |index| Some(KeyArg::Path(index));
    match name.as_ref() {
        "open" | "creat" | "stat" | "lstat" | "access" | "readlink" | "execve" | "chdir"
        | "mkdir" | "rmdir" | "unlink" | "rename" | "truncate" | "chmod" | "chown" | "lchown"
        | "getxattr" | "lgetxattr" | "listxattr" | "statfs" | "mknod" | "symlink" | "link"
        | "utimes" | "chroot" => path(0),
        "openat" | "openat2" | "newfstatat" | "statx" | "faccessat" | "faccessat2"
        | "readlinkat" | "execveat" | "mkdirat" | "unlinkat" | "renameat" | "renameat2"
        | "fchmodat" | "fchownat" | "utimensat" | "mknodat" | "linkat" | "inotify_add_watch"
        | "name_to_handle_at" => path(1),
        "read" | "write" | "pread64" | "pwrite64" | "readv" | "writev" | "preadv" | "pwritev"
        | "preadv2" | "pwritev2" | "fstat" | "lseek" | "ioctl" | "fcntl" | "close" | "fsync"
        | "fdatasync" | "ftruncate" | "getdents64" | "sendto" | "recvfrom" | "sendmsg"
        | "recvmsg" | "sendmmsg" | "recvmmsg" | "accept" | "accept4" | "connect" | "bind"
        | "listen" | "shutdown" | "getsockopt" | "setsockopt" | "getsockname" | "getpeername"
        | "epoll_ctl" | "epoll_wait" | "epoll_pwait" | "epoll_pwait2" | "flock" | "fchdir"
        | "fchmod" | "fchown" | "fstatfs" | "sendfile" | "splice" | "fadvise64" | "fallocate"
        | "sync_file_range" | "fgetxattr" => Some(KeyArg::Fd),
        "futex" | "futex_waitv" => Some(KeyArg::Futex),
        _ => None,
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn key_arguments_of_common_syscalls() {
        assert_eq!(key_arg(257), Some(KeyArg::Path(1)), "openat");
        assert_eq!(key_arg(2), Some(KeyArg::Path(0)), "open");
        assert_eq!(key_arg(0), Some(KeyArg::Fd), "read");
        assert_eq!(key_arg(202), Some(KeyArg::Futex), "futex");
        assert_eq!(key_arg(110), None, "getppid");
    }

    #[test]
    fn names_x86_64_syscalls() {
        assert_eq!(name(0), "read");
        assert_eq!(name(110), "getppid");
        assert_eq!(name(257), "openat");
        assert_eq!(name(5), "fstat");
        assert_eq!(name(9999), "syscall_9999");
        assert!(is_poll_family(232)); // epoll_wait
        assert!(!is_poll_family(0));
    }
}
