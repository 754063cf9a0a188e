//! Reading a workload's stdout and stderr as log lines, whatever it writes: a line longer than
//! [`MAX_LINE`] is cut there with a marker (the rest of it is read and dropped), bytes that are
//! not UTF-8 are written as `\xNN`, and the reader stops only at end of file.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The longest log line kept, in bytes (before escaping).
pub const MAX_LINE: usize = 16 * 1024;

/// Reads lines from a workload's output pipe.
pub struct LogLines<R> {
    reader: R,
    buf: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> LogLines<R> {
    pub fn new(reader: R) -> Self {
        LogLines {
            reader,
            buf: Vec::new(),
        }
    }

    /// The next line, without its newline; `None` at end of file or on a read error.
    pub async fn next_line(&mut self) -> Option<String> {
        self.buf.clear();
        let mut cut = 0usize;
        loop {
            let chunk = match self.reader.fill_buf().await {
                Ok(c) => c,
                Err(_) => return None,
            };
            if chunk.is_empty() {
                if self.buf.is_empty() && cut == 0 {
                    return None;
                }
                break;
            }
            let (line_part, found) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (&chunk[..i], Some(i + 1)),
                None => (chunk, None),
            };
            let room = MAX_LINE.saturating_sub(self.buf.len());
            let keep = line_part.len().min(room);
            self.buf.extend_from_slice(&line_part[..keep]);
            cut += line_part.len() - keep;
            let used = found.unwrap_or(chunk.len());
            self.reader.consume(used);
            if found.is_some() {
                break;
            }
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        let mut line = escape(&self.buf);
        if cut > 0 {
            line.push_str(&format!(
                " … [line cut at {MAX_LINE} bytes; {cut} more dropped]"
            ));
        }
        Some(line)
    }
}

/// `bytes` as text, with every byte that is not part of valid UTF-8 written as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8]) -> Vec<String> {
        let mut r = LogLines::new(tokio::io::BufReader::with_capacity(1024, input));
        let mut out = Vec::new();
        while let Some(l) = r.next_line().await {
            out.push(l);
        }
        out
    }

    #[tokio::test]
    async fn invalid_utf8_is_escaped_and_reading_goes_on() {
        let got = lines(b"ok\nbad \xff\xfe byte\r\nafter\nno newline").await;
        assert_eq!(got, ["ok", "bad \\xff\\xfe byte", "after", "no newline"]);
    }

    #[tokio::test]
    async fn long_lines_are_cut_with_a_marker_and_the_next_line_is_whole() {
        let mut input = vec![b'a'; MAX_LINE + 5000];
        input.extend_from_slice(b"\nnext\n");
        let got = lines(&input).await;
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with(&"a".repeat(MAX_LINE)));
        assert!(
            got[0].ends_with("[line cut at 16384 bytes; 5000 more dropped]"),
            "{}",
            &got[0][MAX_LINE..]
        );
        assert_eq!(got[1], "next");
        assert_eq!(lines(b"").await, Vec::<String>::new());
        assert_eq!(lines(b"\n\n").await, ["", ""]);
    }
}
