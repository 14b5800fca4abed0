//! The forward proxy RUN steps reach in proxy-only builds: HTTP/1.1, `CONNECT` tunnels for TLS (bytes
//! passed through, never decrypted) and absolute-form `http://` requests (forwarded with hop-by-hop
//! headers removed). Each request is checked against the allow-list first; a refusal answers `403` at once
//! with the host and the step in its body. Every request ends as one fetch-log record.
//!
//! hyper does the HTTP (parsing, framing, upgrades); kiln only decides and counts.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::allow::AllowList;
use super::log::{FetchLog, Record, SCHEMA, now_rfc3339};

/// How long the proxy waits for a destination to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers that describe one hop and are not forwarded (RFC 9110 §7.6.1, plus the proxy's own).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// What every connection of a build's proxy shares.
#[derive(Debug)]
pub struct Shared {
    /// Where requests may go.
    pub allow: AllowList,
    /// Where they are recorded.
    pub log: FetchLog,
}

/// One step's side of the proxy: which step its connections belong to.
#[derive(Debug)]
pub struct StepCtx {
    /// The build's proxy state.
    pub shared: Arc<Shared>,
    /// `Dockerfile:LINE RUN ...`.
    pub step: String,
}

/// Serves one client connection (from the relay in a step's network namespace).
pub async fn serve(stream: TcpStream, ctx: Arc<StepCtx>) {
    let service = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(req, ctx).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .title_case_headers(true)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

async fn handle(req: Request<Incoming>, ctx: Arc<StepCtx>) -> Response<ProxyBody> {
    if req.method() == Method::CONNECT { tunnel(req, ctx).await } else { forward(req, ctx).await }
}

/// A request being served, until its record is written.
struct Pending {
    time: String,
    started: Instant,
    step: String,
    method: String,
    host: String,
    port: u16,
    target: String,
    path: Option<String>,
}

impl Pending {
    fn finish(self, allowed: bool, status: u16, sent: u64, received: u64, error: Option<String>) -> Record {
        let url = if self.method == "CONNECT" { format!("https://{}", self.target) } else { self.target.clone() };
        Record {
            url,
            bytes: received,
            schema: SCHEMA,
            time: self.time,
            step: self.step,
            method: self.method,
            host: self.host,
            port: self.port,
            target: self.target,
            path: self.path,
            allowed,
            status,
            bytes_sent: sent,
            bytes_received: received,
            duration_ms: self.started.elapsed().as_millis() as u64,
            error,
            by_kiln: false,
        }
    }
}

async fn tunnel(req: Request<Incoming>, ctx: Arc<StepCtx>) -> Response<ProxyBody> {
    let Some(authority) = req.uri().authority().cloned() else {
        return text(StatusCode::BAD_REQUEST, "kiln proxy: CONNECT needs host:port\n");
    };
    let host = unbracket(authority.host());
    let port = authority.port_u16().unwrap_or(443);
    let pending = ctx.pending("CONNECT", &host, port, format!("{}:{port}", authority.host()), None);
    if !ctx.shared.allow.allows(&host, port) {
        return refuse(&ctx, pending);
    }
    let mut upstream = match connect(&host, port).await {
        Ok(stream) => stream,
        Err(e) => return unreachable(&ctx, pending, e),
    };
    let log = ctx.clone();
    tokio::spawn(async move {
        let record = match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let mut client = TokioIo::new(upgraded);
                match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    Ok((sent, received)) => pending.finish(true, 200, sent, received, None),
                    Err(e) => pending.finish(true, 200, 0, 0, Some(format!("tunnel broke: {e}"))),
                }
            }
            Err(e) => pending.finish(true, 200, 0, 0, Some(format!("upgrade failed: {e}"))),
        };
        log.shared.log.push(record);
    });
    Response::new(empty())
}

async fn forward(req: Request<Incoming>, ctx: Arc<StepCtx>) -> Response<ProxyBody> {
    let uri = req.uri().clone();
    let (Some("http"), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "kiln proxy: expected an absolute http:// URL or CONNECT host:port (https goes through CONNECT)\n",
        );
    };
    let host = unbracket(authority.host());
    let port = authority.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".to_string());
    let pending = ctx.pending(req.method().as_str(), &host, port, uri.to_string(), Some(path.clone()));
    if !ctx.shared.allow.allows(&host, port) {
        return refuse(&ctx, pending);
    }
    let stream = match connect(&host, port).await {
        Ok(stream) => stream,
        Err(e) => return unreachable(&ctx, pending, e),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
        Ok(pair) => pair,
        Err(e) => return unreachable(&ctx, pending, std::io::Error::other(e)),
    };
    tokio::spawn(conn);
    let (mut parts, body) = req.into_parts();
    parts.uri = path.parse().unwrap_or_default();
    strip_hop_by_hop(&mut parts.headers);
    if !parts.headers.contains_key(hyper::header::HOST)
        && let Ok(value) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(hyper::header::HOST, value);
    }
    let sent = Arc::new(AtomicU64::new(0));
    let request = Request::from_parts(parts, Counted::new(body, sent.clone(), None));
    let response = match sender.send_request(request).await {
        Ok(response) => response,
        Err(e) => return unreachable(&ctx, pending, std::io::Error::other(e)),
    };
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let status = parts.status.as_u16();
    let log = ctx.clone();
    let on_end: Box<dyn FnOnce(u64) + Send> = Box::new(move |received| {
        log.shared.log.push(pending.finish(true, status, sent.load(Ordering::Relaxed), received, None));
    });
    let body = Counted::new(body, Arc::new(AtomicU64::new(0)), Some(on_end));
    Response::from_parts(parts, body.boxed_unsync())
}

impl StepCtx {
    fn pending(&self, method: &str, host: &str, port: u16, target: String, path: Option<String>) -> Pending {
        Pending {
            time: now_rfc3339(),
            started: Instant::now(),
            step: self.step.clone(),
            method: method.to_string(),
            host: host.to_string(),
            port,
            target,
            path,
        }
    }
}

fn refuse(ctx: &StepCtx, pending: Pending) -> Response<ProxyBody> {
    let message = format!(
        "kiln: --network proxy-only refused {}:{} for {}: not in the allow-list ({}); allow it with --allow-host {}\n",
        pending.host,
        pending.port,
        ctx.step,
        ctx.shared.allow.describe(),
        pending.host
    );
    ctx.shared.log.push(pending.finish(false, 403, 0, 0, Some("not in the allow-list".to_string())));
    let mut response = text(StatusCode::FORBIDDEN, &message);
    response.headers_mut().insert("x-kiln-refused", HeaderValue::from_static("allow-list"));
    response
}

fn unreachable(ctx: &StepCtx, pending: Pending, error: std::io::Error) -> Response<ProxyBody> {
    let message = format!("kiln proxy: cannot reach {}:{}: {error}\n", pending.host, pending.port);
    ctx.shared.log.push(pending.finish(true, 502, 0, 0, Some(error.to_string())));
    text(StatusCode::BAD_GATEWAY, &message)
}

async fn connect(host: &str, port: u16) -> std::io::Result<TcpStream> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port))).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connection timed out")),
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers the Connection header names are hop-by-hop too.
    let named: Vec<String> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for name in HOP_BY_HOP.iter().map(|s| s.to_string()).chain(named) {
        headers.remove(name.as_str());
    }
}

fn unbracket(host: &str) -> String {
    host.trim_start_matches('[').trim_end_matches(']').to_string()
}

fn empty() -> ProxyBody {
    Full::new(Bytes::new()).map_err(|never| match never {}).boxed_unsync()
}

fn text(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut response =
        Response::new(Full::new(Bytes::from(message.to_string())).map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// A body that counts its data bytes and reports the total once, when it ends or is dropped.
struct Counted<B> {
    inner: B,
    count: Arc<AtomicU64>,
    on_end: Option<Box<dyn FnOnce(u64) + Send>>,
}

impl<B> Counted<B> {
    fn new(inner: B, count: Arc<AtomicU64>, on_end: Option<Box<dyn FnOnce(u64) + Send>>) -> Self {
        Counted { inner, count, on_end }
    }

    fn end(&mut self) {
        if let Some(on_end) = self.on_end.take() {
            on_end(self.count.load(Ordering::Relaxed));
        }
    }
}

impl<B> Drop for Counted<B> {
    fn drop(&mut self) {
        self.end();
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.count.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            Poll::Ready(None) => this.end(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
