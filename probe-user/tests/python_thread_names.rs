//! `thread_names` against the real CPython 3.8–3.13 interpreters installed by pyenv.
//!
//! Each helper process starts named threads (one a `Thread` subclass with extra
//! attributes, one whose `__dict__` has been materialized, one with a non-ASCII name), lets
//! one more finish, prints its pid, the native thread id of the main thread and of each
//! live named thread, and "ready", then blocks on stdin; closing stdin ends it (it is
//! killed by pid as well). Reading another process's memory needs root: without it (and
//! without `CI=true`) the tests skip with a message; with `CI=true` missing interpreters or
//! privileges fail.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use probe_user::python::discover::discover;
use probe_user::python::memory::LiveMemory;
use probe_user::python::thread_names::thread_names;

mod common;

use common::{interpreter, is_root, require, Helper};

const SCRIPT: &str = r#"import os, sys, threading

block = threading.Event()
tids = {}

def record(started):
    tids[threading.current_thread().name] = threading.get_native_id()
    started.set()
    block.wait()

class Spin(threading.Thread):
    def __init__(self, name):
        super().__init__(name=name, daemon=True)
        self.extra = [1, 2, 3]
        self.started_here = threading.Event()

    def run(self):
        record(self.started_here)

done = threading.Thread(target=lambda: None, name="finished-1")
done.start()
done.join()

threads = []
for name in ["spinner-1", "нить-✓"]:
    ev = threading.Event()
    t = threading.Thread(target=record, args=(ev,), name=name, daemon=True)
    t.start()
    threads.append((t, ev))
vars(threads[1][0])["materialized"] = True
grpc = Spin("Thread-gRPC-StopChannelSpin")
grpc.start()
threads.append((grpc, grpc.started_here))
for _, ev in threads:
    ev.wait()
order = ["spinner-1", "Thread-gRPC-StopChannelSpin", "нить-✓"]
print(os.getpid(), threading.get_native_id(), *(tids[n] for n in order), "ready", flush=True)
sys.stdin.read()
"#;

/// The names `SCRIPT` reports tids for, after the main thread, in order.
const NAMES: [&str; 3] = ["spinner-1", "Thread-gRPC-StopChannelSpin", "нить-✓"];

/// Writes `SCRIPT` to a fresh file (tests run in parallel).
fn write_script(minor: u8) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "probe-thread-names-3{minor}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("threads.py");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(SCRIPT.as_bytes()))
        .expect("write script");
    path
}

fn check_names(minor: u8) {
    let python = interpreter(3, minor);
    if !require(python.is_some(), &format!("no pyenv CPython 3.{minor}")) {
        return;
    }
    if !require(is_root(), "not root: cannot read other processes' memory") {
        return;
    }
    let script = write_script(minor);
    let helper = Helper::spawn(Command::new(python.unwrap()).arg(&script));
    let _ = std::fs::remove_dir_all(script.parent().unwrap());
    let fields: Vec<&str> = helper.first_line.split_whitespace().collect();
    assert_eq!(
        fields.last(),
        Some(&"ready"),
        "3.{minor}: helper said {:?}",
        helper.first_line
    );
    let numbers: Vec<u32> = fields[..fields.len() - 1]
        .iter()
        .map(|f| f.parse().unwrap())
        .collect();
    let pid = numbers[0];
    assert_eq!(pid, helper.child.id());
    let mut want: HashMap<u32, String> = HashMap::from([(numbers[1], "MainThread".into())]);
    for (tid, name) in numbers[2..].iter().zip(NAMES) {
        want.insert(*tid, name.to_string());
    }
    assert_eq!(want.len(), 4, "3.{minor}: {numbers:?}");

    let proc = discover(pid).unwrap_or_else(|e| panic!("discover 3.{minor}: {e:?}"));
    let mem = LiveMemory::new(pid);
    let names = thread_names(&proc, &mem).unwrap_or_else(|e| panic!("3.{minor}: {e:?}"));
    eprintln!("3.{minor}: {names:?}");
    assert_eq!(names, want, "3.{minor}");
    assert_eq!(
        numbers[1], pid,
        "3.{minor}: the main thread's tid is the pid"
    );
}

#[test]
fn thread_names_3_8() {
    check_names(8);
}

#[test]
fn thread_names_3_9() {
    check_names(9);
}

#[test]
fn thread_names_3_10() {
    check_names(10);
}

#[test]
fn thread_names_3_11() {
    check_names(11);
}

#[test]
fn thread_names_3_12() {
    check_names(12);
}

#[test]
fn thread_names_3_13() {
    check_names(13);
}
