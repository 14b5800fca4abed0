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
                            let mut head = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
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
