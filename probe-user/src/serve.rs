//! `probe watch --listen`: a small HTTP/1 server (hyper) for `GET /metrics` and
//! `GET /debug/pprof/profile?seconds=N`, Go's pprof convention, which Parca and Grafana
//! Alloy's `pyroscope.scrape` collect. The server holds no state: each request is passed
//! to the watch loop, which owns the kernel side and the samples, and the answer comes
//! back on a oneshot channel.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header, Method, Request as HttpRequest, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot, Semaphore},
};

/// Longest profile a request may ask for, and the default (Go's).
pub const MAX_PROFILE_SECS: u64 = 300;
const DEFAULT_PROFILE_SECS: u64 = 30;
/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 16;
/// A client that has not sent its request line and headers by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the watch loop is asked for.
pub enum Request {
    /// The metrics, in the text format.
    Metrics(oneshot::Sender<String>),
    /// The samples of the next `seconds`, as a gzipped pprof profile, or why not.
    Profile {
        seconds: u64,
        reply: oneshot::Sender<Result<Vec<u8>, String>>,
    },
}

/// Binds `addr`: before anything is attached, so that a port in use is said at once.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves on `listener` until the runtime stops, passing requests to `requests`.
pub fn spawn(listener: TcpListener, requests: mpsc::Sender<Request>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let Ok((stream, _peer)) = listener.accept().await else {
                // Out of file descriptors, say: try again shortly rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let requests = requests.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| answer(request, requests.clone()));
                // A client that goes away mid-request is its own problem.
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                drop(slot);
            });
        }
    });
}

async fn answer(
    request: HttpRequest<Incoming>,
    requests: mpsc::Sender<Request>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() != Method::GET {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET\n".to_owned(),
        ));
    }
    let response = match request.uri().path() {
        "/metrics" => {
            let (reply, answer) = oneshot::channel();
            match ask(&requests, Request::Metrics(reply), answer).await {
                Some(metrics) => {
                    let mut response = text(StatusCode::OK, metrics);
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    response
                }
                None => stopping(),
            }
        }
        "/debug/pprof/profile" => match profile_seconds(request.uri().query()) {
            Err(why) => text(StatusCode::BAD_REQUEST, format!("{why}\n")),
            Ok(seconds) => {
                let (reply, answer) = oneshot::channel();
                match ask(&requests, Request::Profile { seconds, reply }, answer).await {
                    Some(Ok(profile)) => profile_response(profile),
                    Some(Err(why)) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
                    None => stopping(),
                }
            }
        },
        "/" => text(
            StatusCode::OK,
            "probe watch: /metrics (Prometheus), /debug/pprof/profile?seconds=N (pprof)\n"
                .to_owned(),
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    Ok(response)
}

/// Passes `request` to the watch loop and waits for its answer; `None` once it stopped.
async fn ask<T>(
    requests: &mpsc::Sender<Request>,
    request: Request,
    answer: oneshot::Receiver<T>,
) -> Option<T> {
    requests.send(request).await.ok()?;
    answer.await.ok()
}

/// `seconds=N` from the query (default 30, 1..=300), as Go's handler reads it.
pub fn profile_seconds(query: Option<&str>) -> Result<u64, String> {
    let value = query
        .into_iter()
        .flat_map(|query| query.split('&'))
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "seconds")
        .map(|(_, value)| value);
    let Some(value) = value else {
        return Ok(DEFAULT_PROFILE_SECS);
    };
    match value.parse::<u64>() {
        Ok(seconds) if (1..=MAX_PROFILE_SECS).contains(&seconds) => Ok(seconds),
        _ => Err(format!(
            "seconds must be a whole number from 1 to {MAX_PROFILE_SECS}, not {value:?}"
        )),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn profile_response(profile: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(profile)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        header::HeaderValue::from_static("attachment; filename=\"profile\""),
    );
    response
}

fn stopping() -> Response<Full<Bytes>> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "probe watch is stopping\n".to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_seconds_follow_gos_handler() {
        assert_eq!(profile_seconds(None), Ok(30));
        assert_eq!(profile_seconds(Some("debug=1")), Ok(30));
        assert_eq!(profile_seconds(Some("seconds=5")), Ok(5));
        assert_eq!(profile_seconds(Some("x=1&seconds=300")), Ok(300));
        for bad in [
            "seconds=0",
            "seconds=301",
            "seconds=-1",
            "seconds=1.5",
            "seconds=",
        ] {
            assert!(profile_seconds(Some(bad)).is_err(), "{bad}");
        }
    }
}
