//! A static file server on 127.0.0.1 for the speedscope app: the app fetches its profile
//! with `fetch()`, which Chromium refuses for `file://` URLs. It runs on threads of the
//! test process, so it needs no program of its own and stops when dropped.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// URL path of the profile; the app's files are under `/app/`.
const PROFILE_PATH: &str = "/profile.json";

/// Serves `app` under `/app/` and one file as `/profile.json`.
pub struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts serving on an unused port; panics if it cannot listen.
    pub fn start(app: PathBuf, profile: PathBuf) -> Server {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("failed to listen on 127.0.0.1: {e}"));
        let port = listener.local_addr().expect("bound address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let roots = Arc::new((app, profile));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let roots = Arc::clone(&roots);
                // One thread per connection: Chromium opens connections it may never use,
                // which must not hold up the others.
                std::thread::spawn(move || respond(stream, &roots.0, &roots.1));
            }
        });
        Server {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// The app's URL with the profile to open (`#profileURL=`).
    pub fn app_url(&self) -> String {
        let profile = format!("http://127.0.0.1:{}{PROFILE_PATH}", self.port);
        let encoded = profile.replace(':', "%3A").replace('/', "%2F");
        format!(
            "http://127.0.0.1:{}/app/index.html#profileURL={encoded}",
            self.port
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one request: a GET of the profile or of a file of the app, else 404.
fn respond(stream: TcpStream, app: &Path, profile: &Path) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    // Drain the headers: answering before reading them can reset the connection.
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let file = if path == PROFILE_PATH {
        Some(profile.to_path_buf())
    } else {
        path.strip_prefix("/app/")
            .and_then(|rest| inside(app, rest))
    };
    let body = file.as_ref().and_then(|file| std::fs::read(file).ok());
    let mut stream = &stream;
    let _ = match body {
        Some(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                content_type(file.as_deref().unwrap_or(app)),
                body.len()
            );
            stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(&body))
        }
        None => stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    };
}

/// `dir/relative`, unless `relative` would leave `dir`.
fn inside(dir: &Path, relative: &str) -> Option<PathBuf> {
    let relative = Path::new(relative);
    let plain = relative
        .components()
        .all(|part| matches!(part, Component::Normal(_)));
    plain.then(|| dir.join(relative))
}

/// The MIME type of a file of the app, by extension: browsers refuse scripts and styles
/// served as anything else.
fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript",
        "css" => "text/css",
        "json" => "application/json",
        "wasm" => "application/wasm",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::inside;

    #[test]
    fn paths_stay_inside_the_app() {
        let app = Path::new("/app");
        assert_eq!(inside(app, "index.html"), Some("/app/index.html".into()));
        assert_eq!(inside(app, "../etc/passwd"), None);
        assert_eq!(inside(app, "/etc/passwd"), None);
    }
}
