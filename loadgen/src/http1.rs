//! The generator's own HTTP/1.1 client: keep-alive connections reused newest first, one
//! request at a time on each, the whole request written in one call and the answer parsed
//! where it was read.
//!
//! A generator shares the machine with what it measures, so its CPU per request is taken from
//! the system under test. reqwest cost about 38 µs of CPU per single-event request here (its
//! URL parsing, header maps, a dispatch task between each request and its connection, a dozen
//! allocations), close to the 40 to 45 µs of the gateway it was measuring; wrk and oha are as
//! lean as this for the same reason.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0:?} is not an http://host:port base URL")]
    Base(String),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("malformed answer: {0}")]
    Malformed(&'static str),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// An answer: its status and its body (chunked bodies decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    addr: SocketAddr,
    /// `Host` header value.
    host: String,
    /// The base URL's path, put before each request's.
    prefix: String,
    timeout: Duration,
    idle: Mutex<Vec<Conn>>,
}

impl Client {
    /// For `http://host:port[/prefix]`; the host is resolved once, here.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, Error> {
        let bad = || Error::Base(base.to_owned());
        let rest = base.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let addr = authority
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(bad)?;
        Ok(Self {
            inner: Arc::new(Inner {
                addr,
                host: authority.to_owned(),
                prefix: prefix.trim_end_matches('/').to_owned(),
                timeout,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// POSTs `body` to `path` with `headers`, each a whole line ending in `\r\n`
    /// (`Content-Type: application/json\r\n`).
    pub async fn post(&self, path: &str, headers: &str, body: &[u8]) -> Result<Response, Error> {
        self.send("POST", path, headers, Some(body)).await
    }

    /// GETs `path` with `headers`, as [`Client::post`] takes them.
    pub async fn get(&self, path: &str, headers: &str) -> Result<Response, Error> {
        self.send("GET", path, headers, None).await
    }

    /// A request with `body` (and its `Content-Length`), or with none.
    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, Error> {
        use std::io::Write as _;
        let i = &self.inner;
        let mut request = Vec::with_capacity(128 + headers.len() + body.map_or(0, <[u8]>::len));
        // Writing into a Vec cannot fail.
        let _ = write!(
            request,
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\n",
            i.prefix, i.host
        );
        if let Some(body) = body {
            let _ = write!(request, "Content-Length: {}\r\n", body.len());
        }
        let _ = write!(request, "{headers}\r\n");
        request.extend_from_slice(body.unwrap_or_default());
        tokio::time::timeout(i.timeout, self.exchange(&request))
            .await
            .map_err(|_| Error::Timeout(i.timeout))?
    }

    async fn exchange(&self, request: &[u8]) -> Result<Response, Error> {
        loop {
            let pooled = self
                .inner
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(c) => c,
                None => Conn::open(self.inner.addr).await?,
            };
            match conn.round_trip(request).await {
                Ok((response, keep)) => {
                    if keep {
                        self.inner
                            .idle
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(conn);
                    }
                    return Ok(response);
                }
                // A kept-alive connection the server closed while it sat idle: nothing of
                // the request was answered, so it goes again on another connection (as
                // hyper's client does). A fresh connection gets no second try.
                Err(Failure::Closed) if reused => continue,
                Err(Failure::Closed) => {
                    return Err(Error::Io(io::ErrorKind::UnexpectedEof.into()));
                }
                Err(Failure::Other(e)) => return Err(e),
            }
        }
    }
}

enum Failure {
    /// The connection ended before any byte of an answer.
    Closed,
    Other(Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Other(Error::Io(e))
    }
}

fn closed_early(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof
    )
}

/// How an answer's body is delimited.
enum Framing {
    Length(usize),
    Chunked,
    /// Until the server closes the connection.
    Close,
}

struct Conn {
    stream: TcpStream,
    /// What was read of the current answer.
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Reads more of the answer; `false` at the end of the stream.
    async fn fill(&mut self) -> io::Result<bool> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(4096);
        }
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }

    /// Sends the request and reads its answer; the flag says whether the connection may
    /// carry another request.
    async fn round_trip(&mut self, request: &[u8]) -> Result<(Response, bool), Failure> {
        self.buf.clear();
        match self.stream.write_all(request).await {
            Err(e) if closed_early(&e) => return Err(Failure::Closed),
            r => r?,
        }
        let (status, head, framing, mut keep) = loop {
            match self.fill().await {
                Ok(true) => {}
                Ok(false) if self.buf.is_empty() => return Err(Failure::Closed),
                Err(e) if self.buf.is_empty() && closed_early(&e) => return Err(Failure::Closed),
                Ok(false) => return Err(Failure::Other(Error::Malformed("cut off in its head"))),
                Err(e) => return Err(e.into()),
            }
            if let Some(parsed) = parse_head(&self.buf).map_err(Failure::Other)? {
                break parsed;
            }
        };
        let body = match framing {
            Framing::Length(len) => {
                while self.buf.len() < head + len {
                    if !self.fill().await? {
                        return Err(Failure::Other(Error::Malformed("cut off in its body")));
                    }
                }
                // Bytes past the answer would be one nobody asked for.
                keep &= self.buf.len() == head + len;
                self.buf[head..head + len].to_vec()
            }
            Framing::Chunked => loop {
                match dechunk(&self.buf[head..]).map_err(Failure::Other)? {
                    Some((body, used)) => {
                        keep &= head + used == self.buf.len();
                        break body;
                    }
                    None => {
                        if !self.fill().await? {
                            return Err(Failure::Other(Error::Malformed("cut off in its body")));
                        }
                    }
                }
            },
            Framing::Close => {
                while self.fill().await? {}
                keep = false;
                self.buf[head..].to_vec()
            }
        };
        Ok((Response { status, body }, keep))
    }
}

/// The status, the head's length, the body's framing and whether the server keeps the
/// connection open; `None` while the head is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize, Framing, bool)>, Error> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Error::Malformed("not an HTTP/1.1 answer")),
    };
    let status = response.code.unwrap_or(0);
    let mut keep = response.version == Some(1);
    let mut framing = if status == 204 || status == 304 || status < 200 {
        Framing::Length(0)
    } else {
        Framing::Close
    };
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let len = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or(Error::Malformed("Content-Length"))?;
            if !matches!(framing, Framing::Chunked) {
                framing = Framing::Length(len);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if h.value.eq_ignore_ascii_case(b"chunked") {
                framing = Framing::Chunked;
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            keep = !h.value.eq_ignore_ascii_case(b"close");
        }
    }
    if matches!(framing, Framing::Close) {
        keep = false;
    }
    Ok(Some((status, head, framing, keep)))
}

/// A whole chunked body from `buf` and the bytes it took; `None` while incomplete. Trailers
/// are read past, not kept.
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, Error> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let (start, size) = match httparse::parse_chunk_size(&buf[at..]) {
            Ok(httparse::Status::Complete(c)) => c,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(Error::Malformed("chunk size")),
        };
        let size = usize::try_from(size).map_err(|_| Error::Malformed("chunk size"))?;
        at += start;
        if size == 0 {
            // Trailers, if any, then the empty line.
            let rest = &buf[at..];
            return Ok(if rest.starts_with(b"\r\n") {
                Some((body, at + 2))
            } else {
                rest.windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|p| (body, at + p + 4))
            });
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err(Error::Malformed("chunk end"));
        }
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    /// A server that answers each request it reads with the next of `answers` (requests are
    /// read up to their `Content-Length`), and closes the connection after the answers given
    /// for it; counts connections.
    async fn server(per_connection: Vec<&'static str>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let answers = per_connection.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for answer in answers {
                        // Read one request: its head, then its body.
                        loop {
                            let mut h = [httparse::EMPTY_HEADER; 16];
                            let mut r = httparse::Request::new(&mut h);
                            if let Ok(httparse::Status::Complete(n)) = r.parse(&buf) {
                                let len: usize = r
                                    .headers
                                    .iter()
                                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                                    .unwrap_or(0);
                                if buf.len() >= n + len {
                                    buf.drain(..n + len);
                                    break;
                                }
                            }
                            if socket.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                                return;
                            }
                        }
                        if socket.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (base, connections)
    }

    const OK: &str = "HTTP/1.1 202 Accepted\r\ncontent-length: 9\r\n\r\n{\"id\":1}\n";

    #[tokio::test]
    async fn answers_are_read_by_length_and_by_chunks_on_one_kept_connection() {
        let chunked = "HTTP/1.1 207 Multi-Status\r\ntransfer-encoding: chunked\r\n\r\n\
                       4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        let (base, connections) = server(vec![OK, chunked, OK]).await;
        let client = Client::new(&base, Duration::from_secs(5)).expect("client");
        let json = "Content-Type: application/json\r\n";
        let first = client.post("/api/logs", json, b"{}").await.expect("first");
        assert_eq!(first.status, 202);
        assert_eq!(first.body, b"{\"id\":1}\n");
        let second = client.post("/api/logs", json, b"[]").await.expect("second");
        assert_eq!(
            (second.status, second.body.as_slice()),
            (207, &b"{\"a\":1}"[..])
        );
        client.post("/api/logs", json, b"{}").await.expect("third");
        assert_eq!(connections.load(Ordering::SeqCst), 1, "one connection kept");
    }

    #[tokio::test]
    async fn a_get_goes_without_a_body_on_the_same_kept_connection() {
        let (base, connections) = server(vec![OK, OK, OK]).await;
        let client = Client::new(&base, Duration::from_secs(5)).expect("client");
        let auth = "Authorization: Bearer t\r\n";
        assert_eq!(client.get("/health", auth).await.expect("get").status, 202);
        assert_eq!(
            client
                .post("/api/logs", auth, b"{}")
                .await
                .expect("post")
                .status,
            202
        );
        assert_eq!(client.get("/health", "").await.expect("get").status, 202);
        assert_eq!(connections.load(Ordering::SeqCst), 1, "one connection kept");
    }

    #[tokio::test]
    async fn a_kept_connection_the_server_closed_is_replaced_and_the_request_sent_again() {
        // Each connection answers once, then the server closes it.
        let (base, connections) = server(vec![OK]).await;
        let client = Client::new(&base, Duration::from_secs(5)).expect("client");
        for _ in 0..3 {
            let r = client.post("/", "", b"x").await.expect("answered");
            assert_eq!(r.status, 202);
        }
        assert_eq!(connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out_and_a_garbled_answer_is_an_error() {
        let (base, _) = server(vec!["garbage\r\n\r\n"]).await;
        let client = Client::new(&base, Duration::from_secs(5)).expect("client");
        assert!(matches!(
            client.post("/", "", b"x").await,
            Err(Error::Malformed(_))
        ));
        let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", silent.local_addr().expect("addr"));
        let client = Client::new(&base, Duration::from_millis(200)).expect("client");
        assert!(matches!(
            client.post("/", "", b"x").await,
            Err(Error::Timeout(_))
        ));
        assert!(Client::new("https://example.invalid", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn chunked_bodies_wait_for_their_end_and_skip_trailers() {
        assert!(dechunk(b"5\r\nhel").expect("partial").is_none());
        let (body, used) = dechunk(b"5\r\nhello\r\n0\r\nx-t: 1\r\n\r\nNEXT")
            .expect("ok")
            .expect("complete");
        assert_eq!((body.as_slice(), used), (&b"hello"[..], 23));
        assert!(dechunk(b"5\r\nhelloXX0\r\n\r\n").is_err());
    }
}
