//! Outside programs that read the files `probe record` writes, so that the tests check
//! each format with a real reader of it rather than with probe's own idea of it:
//! `go tool pprof` for pprof, the speedscope app and its file-format schema (with Ajv, a
//! JSON-schema validator) for speedscope, headless Chromium for the SVG flame graph and
//! for the speedscope app itself.
//!
//! `cargo xtask test` installs them (xtask/src/peers.rs): Debian's `golang-go` and
//! `chromium`, and the npm packages `speedscope` and `ajv` in `target/peers`. A missing
//! peer skips the check with a message, except under `CI=true`, where it fails. A peer
//! that rejects a file panics with what it said.

mod http;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::python::target_dir;
use crate::workload::ScratchDir;

/// How long one run of a peer may take before the test gives up on it. Chromium's first
/// start on a fresh machine takes ~20 s (font caches); later ones ~1 s.
const PEER_LIMIT: Duration = Duration::from_secs(90);
/// Time a page gets to load and run its scripts before Chromium dumps its DOM; virtual,
/// so Chromium skips ahead when the page is idle.
const PAGE_BUDGET_MS: u32 = 10_000;
/// Flags for a headless Chromium that needs nothing from outside this machine.
const CHROMIUM_FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
];
/// Validates argv[2] (a JSON file) against the schema argv[1]; prints Ajv's errors.
const VALIDATE_JS: &str = r#"
const fs = require('fs');
const Ajv = require('ajv');
const [schemaPath, filePath] = process.argv.slice(1);
const ajv = new Ajv({ allErrors: true });
const validate = ajv.compile(JSON.parse(fs.readFileSync(schemaPath, 'utf8')));
if (!validate(JSON.parse(fs.readFileSync(filePath, 'utf8')))) {
  console.error(ajv.errorsText(validate.errors, { separator: '\n' }));
  process.exit(1);
}
"#;

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// `None` after saying why the check is skipped; under `CI=true`, a panic instead.
fn missing<T>(what: &str) -> Option<T> {
    assert!(
        !ci(),
        "CI=true but {what} is missing (`cargo xtask test` installs it)"
    );
    eprintln!("skipping: {what} is missing (`cargo xtask test` installs it)");
    None
}

/// The first of `candidates` that exists, else `name` found on PATH.
fn program(name: &str, candidates: &[&str]) -> Option<PathBuf> {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .collect()
        })
        .unwrap_or_default();
    candidates
        .iter()
        .map(PathBuf::from)
        .chain(on_path)
        .find(|path| path.is_file())
}

/// `py-spy dump --pid PID` (it pauses the process while it reads it), or `None` after
/// saying why not (panics under `CI=true`). Its stdout.
pub fn py_spy_dump(pid: u32) -> Option<String> {
    let py_spy = target_dir().join("peers/py-spy-venv/bin/py-spy");
    if !py_spy.is_file() {
        return missing("py-spy (target/peers/py-spy-venv)");
    }
    let output = run_bounded(
        Command::new(py_spy).args(["dump", "--pid", &pid.to_string()]),
        Duration::from_secs(30),
    );
    assert!(
        output.status.success(),
        "py-spy dump failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn go() -> Option<PathBuf> {
    program("go", &["/usr/lib/go/bin/go"]).or_else(|| missing("go (Debian package golang-go)"))
}

/// The Prometheus server (Debian package prometheus); `None` after saying why not.
pub fn prometheus() -> Option<PathBuf> {
    program("prometheus", &["/usr/bin/prometheus"])
        .or_else(|| missing("prometheus (Debian package prometheus)"))
}

fn chromium() -> Option<PathBuf> {
    program("chromium", &["/usr/bin/chromium"]).or_else(|| missing("chromium"))
}

/// `target/peers/node_modules/<package>`, where xtask installs the npm peers.
fn npm_package(package: &str) -> Option<PathBuf> {
    let dir = target_dir().join("peers/node_modules").join(package);
    if dir.join("package.json").is_file() {
        return Some(dir);
    }
    missing(&format!("npm package {package} in {}", dir.display()))
}

/// The speedscope app's directory (`index.html`, `file-format-schema.json`).
fn speedscope_app() -> Option<PathBuf> {
    Some(npm_package("speedscope")?.join("dist/release"))
}

/// Runs `command`, killing it by PID after `limit` (a gdb killed so detaches: the kernel
/// ends its ptrace of the workload with it); panics if it cannot start.
pub(crate) fn run_bounded(command: &mut Command, limit: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start {command:?}: {e}"));
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match result.recv_timeout(limit) {
        Ok(output) => output.unwrap_or_else(|e| panic!("failed to wait for {command:?}: {e}")),
        Err(_) => {
            // SAFETY: kill has no memory-safety preconditions; the pid is our own child,
            // still unreaped because its waiting thread has not returned.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{command:?} did not finish within {limit:?}");
        }
    }
}

/// Runs `command` and returns its stdout; panics with its output when it fails.
fn run_checked(command: &mut Command) -> String {
    let output = run_bounded(command, PEER_LIMIT);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{stderr}{stdout}",
        output.status
    );
    stdout
}

/// `go tool pprof -top` of a pprof file: the functions by flat weight of the default
/// sample type, with the file's comments. `None` when skipped.
pub fn pprof_top(path: &Path) -> Option<String> {
    pprof(path, &["-top"])
}

/// `go tool pprof -top` of what `source` is: a URL pprof fetches itself, as people run it
/// against a server's `/debug/pprof/profile`.
pub fn pprof_top_source(source: &str) -> Option<String> {
    pprof(Path::new(source), &["-top"])
}

/// `go tool pprof -tags`: the samples broken down by each label's values.
pub fn pprof_tags(path: &Path) -> Option<String> {
    pprof(path, &["-tags"])
}

/// `go tool pprof -top -lines`: the same by function and source line.
pub fn pprof_lines(path: &Path) -> Option<String> {
    pprof(path, &["-top", "-lines"])
}

/// `go tool pprof <args> <path>`, without symbolization: what is checked is what probe
/// wrote, not what pprof could add from the binaries.
fn pprof(path: &Path, args: &[&str]) -> Option<String> {
    let go = go()?;
    let scratch = scratch_dir("pprof");
    let mut command = Command::new(go);
    command
        .args(["tool", "pprof", "-symbolize=none"])
        .args(args)
        .arg(path)
        // Where pprof would keep anything it saves, instead of ~/pprof.
        .env("PPROF_TMPDIR", &scratch.0);
    Some(run_checked(&mut command))
}

/// Validates a speedscope file against the schema shipped in the speedscope npm package
/// (with Ajv), and checks what the schema cannot say: every frame index of every sample
/// is in the shared frame table, one weight per sample. Returns `false` when skipped.
pub fn speedscope_validate(path: &Path) -> bool {
    let (Some(app), Some(ajv)) = (speedscope_app(), npm_package("ajv")) else {
        return false;
    };
    let node_modules = ajv.parent().map(Path::to_path_buf).unwrap_or_default();
    let Some(node) = program("node", &[]).or_else(|| missing("node")) else {
        return false;
    };
    run_checked(
        Command::new(node)
            .arg("-e")
            .arg(VALIDATE_JS)
            .arg(app.join("file-format-schema.json"))
            .arg(path)
            .env("NODE_PATH", node_modules),
    );
    check_speedscope_indices(&read_json(path));
    true
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn check_speedscope_indices(file: &Value) {
    let frames = file["shared"]["frames"].as_array().map_or(0, Vec::len);
    for profile in file["profiles"].as_array().into_iter().flatten() {
        let samples = profile["samples"].as_array().map_or(&[][..], Vec::as_slice);
        let weights = profile["weights"].as_array().map_or(0, Vec::len);
        assert_eq!(samples.len(), weights, "one weight per sample: {profile}");
        for index in samples
            .iter()
            .flat_map(|s| s.as_array().into_iter().flatten())
        {
            let index = index.as_u64().expect("frame indices are integers");
            assert!((index as usize) < frames, "frame {index} of {frames}");
        }
    }
}

/// Opens a speedscope file in the speedscope app (from its npm package, served on
/// 127.0.0.1 with the file) in headless Chromium, and checks that the app loaded it: the
/// page title becomes `<file name> - speedscope` and the profile it opens first is named
/// on the page. Returns `false` when skipped.
pub fn speedscope_opens_in_chromium(path: &Path) -> bool {
    let (Some(chromium), Some(app)) = (chromium(), speedscope_app()) else {
        return false;
    };
    let file = read_json(path);
    let server = http::Server::start(app, path.to_path_buf());
    let dom = dump_dom(&chromium, &server.app_url());
    drop(server);
    let text = page_text(&dom);
    let name = file["name"].as_str().unwrap_or_default();
    assert!(
        text.contains(&format!("{name} - speedscope")),
        "speedscope did not open {} (title should name {name:?}); page text:\n{text}",
        path.display()
    );
    let active = file["activeProfileIndex"].as_u64().unwrap_or(0) as usize;
    if let Some(profile) = file["profiles"][active]["name"].as_str() {
        assert!(
            text.contains(profile),
            "speedscope opened {} without showing profile {profile:?}; page text:\n{text}",
            path.display()
        );
    }
    true
}

/// Opens an SVG file in headless Chromium and returns the text of the page it rendered
/// (every `<text>` and `<title>` of the flame graph, scripts and styles left out); panics
/// when Chromium could not parse the file as SVG. `None` when skipped.
pub fn svg_rendered_text(path: &Path) -> Option<String> {
    let chromium = chromium()?;
    let dom = dump_dom(&chromium, &file_url(path));
    assert!(
        !dom.contains("<parsererror"),
        "Chromium could not parse {}: {}",
        path.display(),
        page_text(&dom)
    );
    assert!(
        dom.contains("<svg"),
        "{} did not render as an SVG document:\n{dom}",
        path.display()
    );
    Some(page_text(&dom))
}

/// The DOM of `url` once loaded, from `chromium --dump-dom` with a fresh profile.
fn dump_dom(chromium: &Path, url: &str) -> String {
    let profile = scratch_dir("chromium");
    run_checked(
        Command::new(chromium)
            .args(CHROMIUM_FLAGS)
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg(format!("--virtual-time-budget={PAGE_BUDGET_MS}"))
            .arg("--dump-dom")
            .arg(url),
    )
}

/// A scratch directory of its own for each call.
fn scratch_dir(name: &str) -> ScratchDir {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    ScratchDir::new(&format!("peer-{name}-{n}"))
}

/// `file://` URL of `path` (made absolute), with the characters a URL cannot hold as-is
/// percent-encoded.
fn file_url(path: &Path) -> String {
    let absolute = std::path::absolute(path)
        .unwrap_or_else(|e| panic!("failed to resolve {}: {e}", path.display()));
    let mut url = String::from("file://");
    for byte in absolute.to_string_lossy().bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                url.push(char::from(byte))
            }
            _ => url.push_str(&format!("%{byte:02X}")),
        }
    }
    url
}

/// The text of a serialized DOM: scripts and styles removed, tags dropped, entities
/// decoded, so that tests can look for names as the page shows them.
fn page_text(dom: &str) -> String {
    let mut text = without_element(dom, "script");
    text = without_element(&text, "style");
    let mut plain = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                plain.push(' ');
            }
            c if !in_tag => plain.push(c),
            _ => {}
        }
    }
    decode_entities(&plain)
}

/// `html` without any `<name ...>...</name>` element.
fn without_element(html: &str, name: &str) -> String {
    let (open, close) = (format!("<{name}"), format!("</{name}>"));
    let mut rest = html;
    let mut out = String::new();
    while let Some(start) = rest.find(&open) {
        out.push_str(&rest[..start]);
        rest = match rest[start..].find(&close) {
            Some(end) => &rest[start + end + close.len()..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

fn decode_entities(text: &str) -> String {
    [
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", "\""),
        ("&#39;", "'"),
        ("&apos;", "'"),
        ("&nbsp;", " "),
        ("&amp;", "&"),
    ]
    .iter()
    .fold(text.to_owned(), |text, (entity, c)| text.replace(entity, c))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{check_speedscope_indices, file_url, page_text};

    #[test]
    fn page_text_drops_markup_scripts_and_entities() {
        let dom = "<svg><style>a{}</style><script>var x = '<a>';</script>\
                   <g><title>python3 [py &quot;Main&quot;] tid 1 (3 samples)</title>\
                   <text>a &amp; b</text></g></svg>";
        let text = page_text(dom);
        assert!(
            text.contains("python3 [py \"Main\"] tid 1 (3 samples)"),
            "{text}"
        );
        assert!(text.contains("a & b"), "{text}");
        assert!(!text.contains("var x"), "{text}");
    }

    #[test]
    fn file_urls_are_percent_encoded() {
        assert_eq!(
            file_url(Path::new("/tmp/a b#1.svg")),
            "file:///tmp/a%20b%231.svg"
        );
    }

    #[test]
    #[should_panic(expected = "frame 2 of 2")]
    fn speedscope_frame_indices_must_exist() {
        let file = serde_json::json!({
            "shared": {"frames": [{"name": "a"}, {"name": "b"}]},
            "profiles": [{"samples": [[0, 1], [2]], "weights": [1, 1]}],
        });
        check_speedscope_indices(&file);
    }
}
