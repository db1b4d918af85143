//! Helpers shared by the tests that run real CPython interpreters.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skips (returns false) or, under CI, fails when a precondition is missing.
pub fn require(ok: bool, what: &str) -> bool {
    if !ok {
        assert!(!ci(), "CI=true but {what}");
        eprintln!("skipping: {what}");
    }
    ok
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn pyenv_root() -> PathBuf {
    if let Ok(root) = std::env::var("PYENV_ROOT") {
        return PathBuf::from(root);
    }
    if let Ok(out) = Command::new("pyenv").arg("root").output() {
        if out.status.success() {
            return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".pyenv")
}

/// `$(pyenv root)/versions/MAJOR.MINOR.*/bin/pythonMAJOR.MINOR`, newest patch release.
pub fn interpreter(major: u8, minor: u8) -> Option<PathBuf> {
    let prefix = format!("{major}.{minor}.");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(pyenv_root().join("versions"))
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    dirs.sort_by_key(|d| {
        let name = d
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        name.rsplit('.')
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    });
    let bin = dirs.pop()?.join(format!("bin/python{major}.{minor}"));
    bin.exists().then_some(bin)
}

/// A spawned helper, killed by pid when dropped.
pub struct Helper {
    pub child: Child,
    pub first_line: String,
}

impl Helper {
    pub fn spawn(cmd: &mut Command) -> Helper {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn helper");
        let mut first_line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut first_line)
            .expect("read ready line");
        Helper { child, first_line }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
