//! A tiny HTTP/1.1 server on 127.0.0.1 serving fixed routes, one request per connection: enough to serve
//! an ADD URL or to play a registry that lies about a blob.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

/// One fixed answer.
#[derive(Clone)]
pub struct Route {
    /// Request path (exact).
    pub path: String,
    /// Content-Type header.
    pub content_type: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// A running server; it stops when the test process ends.
pub struct Server {
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Server {
    /// Serves `routes` (404 for anything else).
    pub fn start(routes: Vec<Route>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("addr").to_string();
        let routes = Arc::new(routes);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let routes = routes.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).is_err() {
                        return;
                    }
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                        line.clear();
                    }
                    let mut parts = request_line.split_whitespace();
                    let method = parts.next().unwrap_or("");
                    let path = parts.next().unwrap_or("");
                    let mut stream = stream;
                    match routes.iter().find(|r| r.path == path) {
                        Some(r) => {
                            let redirects = r.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("location"));
                            let mut head = format!(
                                "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                                if redirects { "302 Found" } else { "200 OK" },
                                r.content_type,
                                r.body.len()
                            );
                            for (k, v) in &r.headers {
                                head.push_str(&format!("{k}: {v}\r\n"));
                            }
                            head.push_str("\r\n");
                            let _ = stream.write_all(head.as_bytes());
                            if method != "HEAD" {
                                let _ = stream.write_all(&r.body);
                            }
                        }
                        None => {
                            let _ = stream
                                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                        }
                    }
                });
            }
        });
        Server { addr }
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// A server that answers every request with headers that promise a body, sends a few bytes of it and
/// then goes silent for `stall` (a hung mirror).
pub fn stalling(stall: std::time::Duration) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut stream = stream;
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\nfirst bytes");
                std::thread::sleep(stall);
            });
        }
    });
    Server { addr }
}

/// A route with a body and content type.
pub fn route(path: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Route {
    Route { path: path.to_string(), content_type: content_type.to_string(), headers: Vec::new(), body: body.into() }
}

/// A route that redirects to `location` (302).
pub fn redirect(path: &str, location: &str) -> Route {
    Route {
        path: path.to_string(),
        content_type: "text/plain".to_string(),
        headers: vec![("Location".to_string(), location.to_string())],
        body: Vec::new(),
    }
}

/// A proxy on 127.0.0.1 in front of `upstream` (`127.0.0.1:PORT`) that answers the first `failures`
/// requests with `503 Service Unavailable` and forwards the rest, one request per connection: a registry
/// that fails transiently, as an overloaded one does during a build storm.
pub struct FlakyProxy {
    /// `127.0.0.1:PORT` of the proxy.
    pub addr: String,
    /// Requests seen so far.
    pub seen: Arc<std::sync::atomic::AtomicUsize>,
}

impl FlakyProxy {
    /// Starts the proxy.
    pub fn start(upstream: &str, failures: usize) -> FlakyProxy {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("addr").to_string();
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (counter, upstream) = (seen.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let upstream = upstream.clone();
                std::thread::spawn(move || {
                    let _ = if n < failures { refuse(stream) } else { forward(stream, &upstream) };
                });
            }
        });
        FlakyProxy { addr, seen }
    }
}

/// Reads one request: its head (with `Connection: close` forced) and its body.
fn read_request(reader: &mut BufReader<std::net::TcpStream>) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if !lower.starts_with("connection:") {
            head.push_str(&line);
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut request = head.into_bytes();
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    request.extend(body);
    Ok(request)
}

fn refuse(stream: std::net::TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    read_request(&mut reader)?;
    let mut stream = stream;
    stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

fn forward(stream: std::net::TcpStream, upstream: &str) -> std::io::Result<()> {
    use std::io::Read;
    let mut reader = BufReader::new(stream.try_clone()?);
    let request = read_request(&mut reader)?;
    let mut up = std::net::TcpStream::connect(upstream)?;
    up.write_all(&request)?;
    let mut up_reader = BufReader::new(up);
    // The answer's head gets `Connection: close` too: this proxy serves one request per connection.
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if up_reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if !line.to_ascii_lowercase().starts_with("connection:") {
            head.push_str(&line);
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut stream = stream;
    stream.write_all(head.as_bytes())?;
    let mut rest = Vec::new();
    up_reader.read_to_end(&mut rest)?;
    stream.write_all(&rest)
}
