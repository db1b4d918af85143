//! Where `probe watch` writes its events: one line each, to stdout or a file that logrotate
//! can move away (SIGHUP reopens it). A write that fails (full disk, file removed with its
//! directory, closed pipe) is counted and the event dropped, never a crash; the next
//! heartbeat says so.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

/// The events' destination.
enum Sink {
    Stdout,
    /// The file, `None` while it cannot be opened (retried at every reopen).
    File(PathBuf, Option<File>),
}

/// One-line events, counted.
pub struct EventLog {
    sink: Sink,
    /// Events written, and those lost to a failed write (or a file that could not be
    /// reopened).
    pub written: u64,
    pub failed: u64,
    /// The latest failure, for the heartbeat.
    pub last_error: Option<String>,
}

impl EventLog {
    /// Events to `path` (appended; created 0600: they hold command lines and names), or to
    /// stdout for `None` or `-`. Fails when the file cannot be opened now: better said at
    /// start than found out at the first event.
    pub fn open(path: Option<&Path>) -> io::Result<Self> {
        let sink = match path {
            None => Sink::Stdout,
            Some(path) if path == Path::new("-") => Sink::Stdout,
            Some(path) => Sink::File(path.to_owned(), Some(open_append(path)?)),
        };
        Ok(Self {
            sink,
            written: 0,
            failed: 0,
            last_error: None,
        })
    }

    /// The file, reopened by name (SIGHUP after logrotate moved it); a no-op for stdout.
    /// A failure is kept for the heartbeat, and the next reopen tries again.
    pub fn reopen(&mut self) {
        if let Sink::File(path, file) = &mut self.sink {
            match open_append(path) {
                Ok(fresh) => *file = Some(fresh),
                Err(err) => {
                    *file = None;
                    self.last_error = Some(format!("reopen {}: {err}", path.display()));
                }
            }
        }
    }

    /// Writes `line` (a newline is added) in one write, so a reader never sees half of it
    /// followed by another event.
    pub fn write(&mut self, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let result = match &mut self.sink {
            Sink::Stdout => {
                let mut stdout = io::stdout().lock();
                stdout.write_all(&bytes).and_then(|()| stdout.flush())
            }
            Sink::File(path, Some(file)) => file
                .write_all(&bytes)
                .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display()))),
            Sink::File(path, None) => Err(io::Error::other(format!(
                "{} is not open (see the earlier reopen error)",
                path.display()
            ))),
        };
        match result {
            Ok(()) => self.written += 1,
            Err(err) => {
                self.failed += 1;
                self.last_error = Some(format!("write an event: {err}"));
            }
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("probe-events-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn events_go_to_a_private_file_and_a_reopen_follows_a_rotation() {
        let dir = scratch("rotate");
        let path = dir.join("events.jsonl");
        let mut log = EventLog::open(Some(&path)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        log.write("{\"event\":1}");
        std::fs::rename(&path, dir.join("events.jsonl.1")).unwrap();
        // Before the reopen the moved file still gets the events, as logrotate expects.
        log.write("{\"event\":2}");
        log.reopen();
        log.write("{\"event\":3}");
        let rotated = std::fs::read_to_string(dir.join("events.jsonl.1")).unwrap();
        assert_eq!(rotated, "{\"event\":1}\n{\"event\":2}\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"event\":3}\n");
        assert_eq!((log.written, log.failed), (3, 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_that_cannot_be_reopened_counts_lost_events() {
        let dir = scratch("lost");
        let path = dir.join("events.jsonl");
        let mut log = EventLog::open(Some(&path)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        log.reopen();
        log.write("{}");
        assert_eq!((log.written, log.failed), (0, 1));
        assert!(log.last_error.as_deref().unwrap().contains("events.jsonl"));
        // The directory back: the next reopen recovers.
        std::fs::create_dir_all(&dir).unwrap();
        log.reopen();
        log.write("{}");
        assert_eq!(log.written, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_path_fails_at_open() {
        let err = EventLog::open(Some(Path::new("/proc/version/events")))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/proc/version/events"), "{err}");
    }

    #[test]
    fn a_full_disk_is_counted_not_fatal() {
        // /dev/full: every write fails with ENOSPC.
        let mut log = EventLog::open(Some(Path::new("/dev/full"))).unwrap();
        log.write("{}");
        assert_eq!((log.written, log.failed), (0, 1));
        assert!(log.last_error.unwrap().contains("No space left"));
    }
}
