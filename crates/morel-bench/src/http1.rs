//! Just enough HTTP/1.1 for a keep-alive load generator: render a request once, then parse
//! each response's status line, framing headers and body length from a byte buffer.

use std::ops::Range;

/// A rendered request, written as is for every call.
pub fn render_request(method: &str, host: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// How the body of a response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    /// No length: the body runs until the server closes the connection.
    UntilClose,
}

/// A response whose head has been read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes of the status line and headers, including the blank line.
    pub head_len: usize,
    /// The server said `Connection: close`.
    pub close: bool,
    framing: Framing,
}

/// A complete response at the start of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complete {
    pub status: u16,
    pub close: bool,
    /// Bytes of the buffer this response used.
    pub consumed: usize,
    /// The body's bytes in the buffer when it is contiguous (not chunked).
    pub body: Option<Range<usize>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed HTTP response: {0}")]
pub struct Malformed(pub &'static str);

/// Parses the head at the start of `buf`; `Ok(None)` until the blank line has arrived.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, Malformed> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > 64 << 10 {
            return Err(Malformed("head longer than 64 KiB"));
        }
        return Ok(None);
    };
    let head = &buf[..end];
    let mut lines = head.split(|&b| b == b'\n').map(trim_cr);
    let status_line = lines.next().ok_or(Malformed("empty"))?;
    if !status_line.starts_with(b"HTTP/1.") || status_line.len() < 12 {
        return Err(Malformed("bad status line"));
    }
    let status = std::str::from_utf8(&status_line[9..12])
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(Malformed("bad status code"))?;
    let mut close = status_line.starts_with(b"HTTP/1.0");
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            length = Some(
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok())
                    .ok_or(Malformed("bad content-length"))?,
            );
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = contains_ci(value, b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            if contains_ci(value, b"close") {
                close = true;
            } else if contains_ci(value, b"keep-alive") {
                close = false;
            }
        }
    }
    let framing = if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Length(0)
    } else {
        Framing::UntilClose
    };
    Ok(Some(Head {
        status,
        head_len: end + 4,
        close: close || framing == Framing::UntilClose,
        framing,
    }))
}

/// Whether the whole response is in `buf`, given its parsed head. `eof` says the server has
/// closed the connection (which ends an `UntilClose` body).
pub fn complete(buf: &[u8], head: &Head, eof: bool) -> Result<Option<Complete>, Malformed> {
    let start = head.head_len;
    let done = |end: usize, body: Option<Range<usize>>| Complete {
        status: head.status,
        close: head.close,
        consumed: end,
        body,
    };
    match head.framing {
        Framing::Length(n) => {
            Ok((buf.len() >= start + n).then(|| done(start + n, Some(start..start + n))))
        }
        Framing::UntilClose => Ok(eof.then(|| done(buf.len(), Some(start..buf.len())))),
        Framing::Chunked => {
            let mut at = start;
            loop {
                let Some(line_end) = find(&buf[at..], b"\r\n") else {
                    return Ok(None);
                };
                let size_text = &buf[at..at + line_end];
                let size_text = size_text
                    .split(|&b| b == b';')
                    .next()
                    .map(trim)
                    .unwrap_or_default();
                let size = std::str::from_utf8(size_text)
                    .ok()
                    .and_then(|s| usize::from_str_radix(s, 16).ok())
                    .ok_or(Malformed("bad chunk size"))?;
                at += line_end + 2;
                if size == 0 {
                    // Trailers (none expected) end with a blank line.
                    let Some(trailer_end) = find(&buf[at..], b"\r\n") else {
                        return Ok(None);
                    };
                    if trailer_end != 0 {
                        let Some(all) = find(&buf[at..], b"\r\n\r\n") else {
                            return Ok(None);
                        };
                        return Ok(Some(done(at + all + 4, None)));
                    }
                    return Ok(Some(done(at + 2, None)));
                }
                if buf.len() < at + size + 2 {
                    return Ok(None);
                }
                at += size + 2;
            }
        }
    }
}

/// The decoded body of a complete chunked response (used only for the sample body).
pub fn dechunk(buf: &[u8], head: &Head) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = head.head_len;
    while let Some(line_end) = find(&buf[at..], b"\r\n") {
        let size = std::str::from_utf8(trim(&buf[at..at + line_end]))
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or(""), 16).ok())
            .unwrap_or(0);
        at += line_end + 2;
        if size == 0 || buf.len() < at + size {
            break;
        }
        out.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(raw: &[u8]) -> Complete {
        let head = parse_head(raw).unwrap().unwrap();
        complete(raw, &head, false).unwrap().unwrap()
    }

    #[test]
    fn content_length_response() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nCONTENT-LENGTH: 2\r\n\r\n42extra";
        let c = whole(raw);
        assert_eq!((c.status, c.close, c.consumed), (200, false, raw.len() - 5));
        assert_eq!(&raw[c.body.unwrap()], b"42");
    }

    #[test]
    fn partial_head_and_body_wait() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap(), None);
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        let head = parse_head(raw).unwrap().unwrap();
        assert_eq!(complete(raw, &head, false).unwrap(), None);
    }

    #[test]
    fn chunked_response() {
        let raw = b"HTTP/1.1 500 Internal\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let head = parse_head(raw).unwrap().unwrap();
        let c = complete(raw, &head, false).unwrap().unwrap();
        assert_eq!((c.status, c.consumed), (500, raw.len()));
        assert_eq!(dechunk(raw, &head), b"abcde");
        let cut = &raw[..raw.len() - 3];
        assert_eq!(complete(cut, &head, false).unwrap(), None);
    }

    #[test]
    fn close_and_until_eof() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello";
        let head = parse_head(raw).unwrap().unwrap();
        assert!(head.close);
        assert_eq!(complete(raw, &head, false).unwrap(), None);
        let c = complete(raw, &head, true).unwrap().unwrap();
        assert_eq!(&raw[c.body.unwrap()], b"hello");
        assert!(parse_head(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }

    #[test]
    fn request_has_length() {
        let r = render_request("POST", "127.0.0.1:1", "/x", b"[1]");
        assert_eq!(
            r,
            b"POST /x HTTP/1.1\r\nHost: 127.0.0.1:1\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n[1]"
        );
    }
}
