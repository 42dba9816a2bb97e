//! Accept raw JSON in query strings, as `curl -g '...?config={"n_layer":6}'` sends it.
//!
//! The `http` crate rejects `"`, `<` and `>` in a query before any handler runs (hyper
//! then answers an empty 400). The contract promises that raw and percent-encoded
//! `config` both work, so connections are read through [`Rewriter`], which
//! percent-encodes those bytes in the query of each request line and passes
//! everything else through unchanged: headers, bodies (by Content-Length or chunked
//! framing) and, after an `Upgrade` request, the rest of the connection. A
//! connection that opens with HTTP/2's preface (h2c with prior knowledge) is binary
//! framing, not lines: it passes through whole.
//!
//! The same stream records when bytes last moved (the idle timeout of
//! `listen.rs`) and gives the heads hyper writes by itself for unparseable requests
//! (400, 414, 431 with an empty body) the contract's JSON error body.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Longest request line or header line we rewrite; longer input passes through.
const MAX_LINE: usize = 64 * 1024;

/// The first line of HTTP/2's connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

#[derive(Debug)]
enum Opening {
    /// Nothing read yet.
    Fresh,
    /// The first bytes match the HTTP/2 preface so far.
    Preface(usize),
    /// HTTP/1 (or the preface was whole and has been passed on).
    Decided,
}

#[derive(Debug)]
enum State {
    RequestLine,
    Headers {
        content_length: u64,
        chunked: bool,
        upgrade: bool,
    },
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    Trailers,
    Passthrough,
}

/// Incremental HTTP/1 request-stream rewriter.
#[derive(Debug)]
pub struct Rewriter {
    state: State,
    line: Vec<u8>,
    opening: Opening,
}

impl Default for Rewriter {
    fn default() -> Self {
        Rewriter {
            state: State::RequestLine,
            line: Vec::new(),
            opening: Opening::Fresh,
        }
    }
}

fn encode_query(line: &[u8], out: &mut Vec<u8>) {
    // METHOD SP target SP version CRLF: encode only inside the target's query.
    let first = line.iter().position(|&b| b == b' ');
    let last = line.iter().rposition(|&b| b == b' ');
    let (Some(first), Some(last)) = (first, last) else {
        out.extend_from_slice(line);
        return;
    };
    if last <= first {
        out.extend_from_slice(line);
        return;
    }
    let mut in_query = false;
    for (i, &b) in line.iter().enumerate() {
        let in_target = i > first && i < last;
        if in_target && b == b'?' {
            in_query = true;
        }
        match b {
            b'"' | b'<' | b'>' if in_target && in_query => {
                out.extend_from_slice(format!("%{b:02X}").as_bytes());
            }
            _ => out.push(b),
        }
    }
}

fn header_value<'a>(line: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(line).ok()?;
    let (k, v) = text.split_once(':')?;
    k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
}

impl Rewriter {
    /// Rewrite `input` (the next bytes read from the client) into `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if !matches!(self.opening, Opening::Decided) {
            // does the connection open with the HTTP/2 preface? (it may come in pieces)
            let seen = match self.opening {
                Opening::Preface(n) => n,
                _ => 0,
            };
            let n = (H2_PREFACE.len() - seen).min(input.len());
            if input[..n] == H2_PREFACE[seen..seen + n] {
                if seen + n == H2_PREFACE.len() {
                    self.state = State::Passthrough;
                    self.opening = Opening::Decided;
                    out.append(&mut self.line);
                    out.extend_from_slice(input);
                } else {
                    // hold nothing back: the rewriter passes request lines on whole
                    self.opening = Opening::Preface(seen + n);
                    self.line.extend_from_slice(input);
                }
                return;
            }
            self.opening = Opening::Decided;
        }
        let mut i = 0;
        while i < input.len() {
            match &mut self.state {
                State::Passthrough => {
                    out.extend_from_slice(&input[i..]);
                    return;
                }
                State::Body(n) => {
                    let take = (*n).min((input.len() - i) as u64) as usize;
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    *n -= take as u64;
                    if *n == 0 {
                        self.state = State::RequestLine;
                    }
                }
                State::ChunkData(n) => {
                    let take = (*n).min((input.len() - i) as u64) as usize;
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    *n -= take as u64;
                    if *n == 0 {
                        self.state = State::ChunkSize;
                    }
                }
                _ => {
                    let b = input[i];
                    i += 1;
                    self.line.push(b);
                    if b == b'\n' || self.line.len() > MAX_LINE {
                        let line = std::mem::take(&mut self.line);
                        self.end_line(line, out);
                    }
                }
            }
        }
    }

    fn end_line(&mut self, line: Vec<u8>, out: &mut Vec<u8>) {
        if line.len() > MAX_LINE {
            out.extend_from_slice(&line);
            self.state = State::Passthrough;
            return;
        }
        let blank = line == b"\r\n" || line == b"\n";
        match &mut self.state {
            State::RequestLine => {
                if blank {
                    out.extend_from_slice(&line); // stray CRLF between requests
                } else {
                    encode_query(&line, out);
                    self.state = State::Headers {
                        content_length: 0,
                        chunked: false,
                        upgrade: false,
                    };
                }
            }
            State::Headers {
                content_length,
                chunked,
                upgrade,
            } => {
                out.extend_from_slice(&line);
                if blank {
                    self.state = if *upgrade {
                        State::Passthrough
                    } else if *chunked {
                        State::ChunkSize
                    } else if *content_length > 0 {
                        State::Body(*content_length)
                    } else {
                        State::RequestLine
                    };
                } else if let Some(v) = header_value(&line, "content-length") {
                    match v.parse() {
                        Ok(n) => *content_length = n,
                        Err(_) => self.state = State::Passthrough,
                    }
                } else if let Some(v) = header_value(&line, "transfer-encoding") {
                    *chunked = v.to_ascii_lowercase().contains("chunked");
                } else if header_value(&line, "upgrade").is_some() {
                    *upgrade = true;
                }
            }
            State::ChunkSize => {
                out.extend_from_slice(&line);
                let text = String::from_utf8_lossy(&line);
                let hex = text
                    .trim()
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                match u64::from_str_radix(&hex, 16) {
                    Ok(0) => self.state = State::Trailers,
                    Ok(n) => self.state = State::ChunkData(n + 2), // data + CRLF
                    Err(_) if blank => {}
                    Err(_) => self.state = State::Passthrough,
                }
            }
            State::Trailers => {
                out.extend_from_slice(&line);
                if blank {
                    self.state = State::RequestLine;
                }
            }
            State::Body(_) | State::ChunkData(_) | State::Passthrough => {
                out.extend_from_slice(&line)
            }
        }
    }
}

/// What the connection's idle watch needs: when bytes last moved, and how many
/// requests are being answered.
#[derive(Debug)]
pub struct Activity {
    born: std::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
    pub in_flight: std::sync::atomic::AtomicUsize,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            born: std::time::Instant::now(),
            last_ms: Default::default(),
            in_flight: Default::default(),
        }
    }
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(
            self.born.elapsed().as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Time since bytes last moved, when no request is being answered.
    pub fn idle_for(&self) -> Option<std::time::Duration> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.in_flight.load(Relaxed) > 0 {
            return None;
        }
        let last = std::time::Duration::from_millis(self.last_ms.load(Relaxed));
        Some(self.born.elapsed().saturating_sub(last))
    }
}

/// The head hyper writes by itself for a request it cannot parse: a 4xx status line,
/// `content-length: 0`, `date` and perhaps `connection: close`, nothing else (our own
/// errors always carry a JSON body). Returns the status.
fn automatic_error_head(buf: &[u8]) -> Option<u16> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()?
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    if !(400..500).contains(&status) {
        return None;
    }
    let mut rest: Vec<String> = lines
        .map(|l| l.to_ascii_lowercase())
        .filter(|l| l != "connection: close")
        .collect();
    rest.sort();
    (rest.len() == 2 && rest[0] == "content-length: 0" && rest[1].starts_with("date:"))
        .then_some(status)
}

/// The contract's error envelope for a status hyper answered by itself.
fn enveloped(status: u16) -> Vec<u8> {
    let (reason, code, detail) = match status {
        431 => (
            "Request Header Fields Too Large",
            "HEADERS_TOO_LARGE",
            "the request's header section is too large",
        ),
        414 => (
            "URI Too Long",
            "URI_TOO_LONG",
            "the request target is too long",
        ),
        _ => (
            "Bad Request",
            "INVALID_INPUT",
            "the HTTP request could not be parsed (request line or a header is malformed)",
        ),
    };
    let body = serde_json::json!({
        "detail": detail,
        "error_code": code,
        "timestamp": super::time::now(),
    })
    .to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A TCP stream whose reads go through a [`Rewriter`], whose traffic is recorded in
/// an [`Activity`], and whose automatic (bodiless) error answers get the error body.
pub struct LenientStream {
    inner: TcpStream,
    rewriter: Rewriter,
    pending: Vec<u8>,
    at: usize,
    activity: std::sync::Arc<Activity>,
    /// A replacement head being written, and how much of it is out.
    replacing: Option<(Vec<u8>, usize)>,
}

impl LenientStream {
    pub fn new(inner: TcpStream, activity: std::sync::Arc<Activity>) -> Self {
        activity.touch();
        LenientStream {
            inner,
            rewriter: Rewriter::default(),
            pending: Vec::new(),
            at: 0,
            activity,
            replacing: None,
        }
    }
}

impl AsyncRead for LenientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.at < this.pending.len() {
                let n = (this.pending.len() - this.at).min(buf.remaining());
                buf.put_slice(&this.pending[this.at..this.at + n]);
                this.at += n;
                return Poll::Ready(Ok(()));
            }
            this.pending.clear();
            this.at = 0;
            let mut raw = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut raw);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    if rb.filled().is_empty() {
                        return Poll::Ready(Ok(())); // EOF
                    }
                    this.activity.touch();
                    this.rewriter.feed(rb.filled(), &mut this.pending);
                }
                other => return other,
            }
        }
    }
}

impl AsyncWrite for LenientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacing.is_none() {
            if let Some(status) = automatic_error_head(buf) {
                this.replacing = Some((enveloped(status), 0));
            }
        }
        if let Some((bytes, at)) = &mut this.replacing {
            // Write the whole replacement, then report the original head as written.
            while *at < bytes.len() {
                match Pin::new(&mut this.inner).poll_write(cx, &bytes[*at..]) {
                    Poll::Ready(Ok(n)) if n > 0 => *at += n,
                    Poll::Ready(Ok(_)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    other => return other,
                }
            }
            this.replacing = None;
            this.activity.touch();
            return Poll::Ready(Ok(buf.len()));
        }
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::{automatic_error_head, Rewriter};

    #[test]
    fn only_hyper_automatic_heads_are_replaced() {
        let auto = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Fri, 27 Nov 2026 08:00:00 GMT\r\n\r\n";
        assert_eq!(automatic_error_head(auto), Some(431));
        let auto = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Fri, 27 Nov 2026 08:24:02 GMT\r\n\r\n";
        assert_eq!(automatic_error_head(auto), Some(400));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 80\r\ndate: x\r\n\r\n";
        assert_eq!(automatic_error_head(ours), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(automatic_error_head(ok), None);
    }

    fn run(chunks: &[&[u8]]) -> String {
        let mut r = Rewriter::default();
        let mut out = Vec::new();
        for c in chunks {
            r.feed(c, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn encodes_quotes_in_the_query_only() {
        let got = run(&[b"GET /api/v1/initialize?config={\"n_layer\":6} HTTP/1.1\r\nHost: x\r\nX-Q: \"keep\"\r\n\r\n"]);
        assert_eq!(got, "GET /api/v1/initialize?config={%22n_layer%22:6} HTTP/1.1\r\nHost: x\r\nX-Q: \"keep\"\r\n\r\n");
    }

    #[test]
    fn bodies_pass_unchanged_and_next_request_is_rewritten() {
        let body = "{\"text\": \"a \\\"q\\\" GET /?\\\"x\\\" HTTP/1.1\"}";
        let req1 = format!(
            "POST /api/v1/forward HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let req2 = "GET /a?b=\"c\" HTTP/1.1\r\n\r\n";
        let all = format!("{req1}{req2}");
        // split at every position to exercise the incremental state machine
        for cut in 0..all.len() {
            let got = run(&[&all.as_bytes()[..cut], &all.as_bytes()[cut..]]);
            assert_eq!(
                got,
                format!("{req1}GET /a?b=%22c%22 HTTP/1.1\r\n\r\n"),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn chunked_bodies_pass_unchanged() {
        let req1 = "POST /f HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n\"GET \r\n3;x=1\r\n\"\"\"\r\n0\r\n\r\n";
        let req2 = "GET /q?\"x\" HTTP/1.1\r\n\r\n";
        assert_eq!(
            run(&[format!("{req1}{req2}").as_bytes()]),
            format!("{req1}GET /q?%22x%22 HTTP/1.1\r\n\r\n")
        );
    }

    #[test]
    fn http2_prior_knowledge_passes_through() {
        // the preface, then binary frames with no line ends, in pieces
        let frames: &[u8] =
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00\"q\x00";
        for cut in [1, 5, 16, 20, frames.len()] {
            let mut rw = Rewriter::default();
            let mut out = Vec::new();
            rw.feed(&frames[..cut], &mut out);
            rw.feed(&frames[cut..], &mut out);
            assert_eq!(out, frames, "cut at {cut}");
        }
        // a request line that only starts like the preface is HTTP/1 as before
        assert_eq!(
            run(&[b"PR", b"IX /a?x=\"1\" HTTP/1.1\r\n\r\n"]),
            "PRIX /a?x=%221%22 HTTP/1.1\r\n\r\n"
        );
    }

    #[test]
    fn upgraded_connections_pass_through() {
        let req = "GET /ws?a=\"b\" HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";
        let frames = "GET /x?\"y\" HTTP/1.1\r\n";
        assert_eq!(
            run(&[format!("{req}{frames}").as_bytes()]),
            format!("GET /ws?a=%22b%22 HTTP/1.1\r\nUpgrade: websocket\r\n\r\n{frames}")
        );
    }
}
