//! Who is at the other end of what a blocked thread waits on, where /proc tells it: the
//! processes holding the other end of a pipe, and for a `connect` to a unix socket, the
//! listening socket at that address and who holds it.
//!
//! Holders are found by reading every process's fd table (/proc/*/fd), once per dump and
//! only when a thread waits on a pipe or a socket.

use std::collections::HashMap;
use std::fs;

use super::read::{SyscallLine, ThreadRead};
use crate::python::memory::{LiveMemory, ProcessMemory};
use crate::syscall_names;

/// `__SO_ACCEPTCON` in /proc/net/unix's flags: a listening socket.
const UNIX_LISTENING: u32 = 0x10000;
/// The wait channel of a `connect` to a unix socket whose listener's backlog is full.
const BACKLOG_FULL_WAIT: &str = "unix_wait_for_peer";
/// Holders named per peer before the rest are counted.
const NAMED_HOLDERS: usize = 3;

/// One open file descriptor of some process.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Holder {
    pid: u32,
    fd: u32,
    /// `O_ACCMODE` of the open file: 0 read, 1 write, 2 both.
    mode: u32,
}

/// Finds peers; reads the fd tables on first need.
#[derive(Default)]
pub struct Peers {
    /// Inode of a pipe or socket -> its holders.
    holders: Option<HashMap<u64, Vec<Holder>>>,
}

impl Peers {
    /// What is at the other end of the syscall `thread` of process `pid` is blocked in,
    /// in a few words; `None` when it is no wait on a pipe or unix socket, or /proc does
    /// not tell.
    pub fn describe(&mut self, pid: u32, thread: &ThreadRead) -> Option<String> {
        let SyscallLine::InSyscall { nr, args, .. } = thread.syscall.as_ref()? else {
            return None;
        };
        let name = syscall_names::name(*nr);
        let fd = args[0] as u32;
        let target = super::read::fd_target(pid, u64::from(fd))?;
        match name.as_ref() {
            "connect" if target.starts_with("socket:[") => {
                let (address, listed) = unix_address(pid, args[1], args[2])?;
                let mut text = format!("connecting to unix socket {address}");
                match listener(pid, &listed) {
                    Some(inode) => {
                        text.push_str(&format!(", listener socket:[{inode}]"));
                        let held = self.held_by(inode, None, |_| true);
                        if !held.is_empty() {
                            text.push_str(&format!(" held by {held}"));
                        }
                    }
                    None => text.push_str(", no listener at that address"),
                }
                if thread.wchan.as_deref() == Some(BACKLOG_FULL_WAIT) {
                    text.push_str(", its backlog full: nobody accepts");
                }
                Some(text)
            }
            "read" | "readv" | "pread64" | "preadv" | "preadv2" | "splice" => {
                let inode = pipe_inode(&target)?;
                let held = self.held_by(inode, Some((pid, fd)), |mode| mode != 0);
                Some(if held.is_empty() {
                    "no writer holds the pipe".to_owned()
                } else {
                    format!("pipe written by {held}")
                })
            }
            "write" | "writev" | "pwrite64" | "pwritev" | "pwritev2" => {
                let inode = pipe_inode(&target)?;
                let held = self.held_by(inode, Some((pid, fd)), |mode| mode != 1);
                Some(if held.is_empty() {
                    "no reader holds the pipe".to_owned()
                } else {
                    format!("pipe read by {held}")
                })
            }
            _ => None,
        }
    }

    /// `812 (sleep) fd 1, ...` for the holders of `inode` whose access `mode` passes,
    /// leaving out `except` (the waiting thread's own fd); empty when there are none.
    fn held_by(
        &mut self,
        inode: u64,
        except: Option<(u32, u32)>,
        mode: impl Fn(u32) -> bool,
    ) -> String {
        let holders = self.holders.get_or_insert_with(read_holders);
        let found: Vec<&Holder> = holders
            .get(&inode)
            .into_iter()
            .flatten()
            .filter(|h| Some((h.pid, h.fd)) != except && mode(h.mode))
            .collect();
        if found.is_empty() {
            return String::new();
        }
        let mut named: Vec<String> = found
            .iter()
            .take(NAMED_HOLDERS)
            .map(|h| {
                let comm = crate::proc::comm(h.pid, None).unwrap_or_default();
                format!(
                    "{} ({}) fd {}",
                    h.pid,
                    crate::report::human::Escaped(&comm),
                    h.fd
                )
            })
            .collect();
        if found.len() > NAMED_HOLDERS {
            named.push(format!("{} more", found.len() - NAMED_HOLDERS));
        }
        named.join(", ")
    }
}

/// `pipe:[123]` -> 123.
fn pipe_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("pipe:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The unix socket address of `len` bytes at `address` in process `pid`: a path, or
/// `@name` for an abstract one; and as /proc/net/unix lists it (an abstract name whole,
/// each NUL written as `@`). `None` for other families.
fn unix_address(pid: u32, address: u64, len: u64) -> Option<(String, String)> {
    const SUN_PATH_MAX: usize = 108;
    let len = usize::try_from(len).ok()?.clamp(2, 2 + SUN_PATH_MAX);
    let mut bytes = vec![0u8; len];
    LiveMemory::new(pid).read(address, &mut bytes).ok()?;
    if u16::from_ne_bytes([bytes[0], bytes[1]]) != libc::AF_UNIX as u16 {
        return None;
    }
    let path = &bytes[2..];
    Some(match path.split_first() {
        // Abstract: the name is every byte after the NUL (trailing NULs are padding here).
        Some((0, name)) => {
            let end = name.iter().rposition(|&b| b != 0).map_or(0, |at| at + 1);
            let listed: Vec<u8> = name
                .iter()
                .map(|&b| if b == 0 { b'@' } else { b })
                .collect();
            (
                format!("@{}", String::from_utf8_lossy(&name[..end])),
                format!("@{}", String::from_utf8_lossy(&listed)),
            )
        }
        _ => {
            let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
            let path = String::from_utf8_lossy(&path[..end]).into_owned();
            (path.clone(), path)
        }
    })
}

/// The inode of the listening unix socket at `address` in process `pid`'s network
/// namespace.
fn listener(pid: u32, address: &str) -> Option<u64> {
    let table = fs::read_to_string(crate::proc::dir(pid, None).join("net/unix")).ok()?;
    listener_in(&table, address)
}

/// [`listener`] in the text of a /proc/net/unix.
fn listener_in(table: &str, address: &str) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        // Num RefCount Protocol Flags Type St Inode Path
        let fields: Vec<&str> = line.split_whitespace().collect();
        let flags = u32::from_str_radix(fields.get(3)?, 16).ok()?;
        let path = fields.get(7)?;
        (flags & UNIX_LISTENING != 0 && *path == address)
            .then(|| fields.get(6)?.parse().ok())
            .flatten()
    })
}

/// Every process's pipes and sockets: inode -> who holds it, with what access.
fn read_holders() -> HashMap<u64, Vec<Holder>> {
    let mut holders: HashMap<u64, Vec<Holder>> = HashMap::new();
    let Ok(processes) = fs::read_dir("/proc") else {
        return holders;
    };
    for process in processes.flatten() {
        let Some(pid) = process.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(fds) = fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for entry in fds.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(target) = fs::read_link(entry.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            let inode = pipe_inode(&target).or_else(|| {
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse()
                    .ok()
            });
            let Some(inode) = inode else {
                continue;
            };
            let mode = fs::read_to_string(process.path().join("fdinfo").join(fd.to_string()))
                .ok()
                .and_then(|info| {
                    let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
                    u32::from_str_radix(flags.trim(), 8).ok()
                })
                .map_or(2, |flags| flags & 3);
            holders
                .entry(inode)
                .or_default()
                .push(Holder { pid, fd, mode });
        }
    }
    holders
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listener_is_found_by_address_and_flags() {
        let table = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00000000 0001 03 4100 @scene\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 4000 @scene\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 4200 /run/x.sock\n";
        assert_eq!(listener_in(table, "@scene"), Some(4000));
        assert_eq!(listener_in(table, "/run/x.sock"), Some(4200));
        assert_eq!(listener_in(table, "@other"), None);
        assert_eq!(pipe_inode("pipe:[77]"), Some(77));
        assert_eq!(pipe_inode("socket:[77]"), None);
    }
}
