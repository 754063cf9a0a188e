//! A workload's stdout and stderr, read as log lines (`loglines.rs`).

use std::fmt::Write as _;

use morel_runtime_process::loglines::{LogLines, MAX_LINE};

use crate::Sig;

pub(crate) const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n\n",
    b"\r\r\n",
    b"\\x",
    b"\\xff",
    b"\xf0\x9f\x98\x80",
    b"\xf0\x9f\x98",
    b"\xe2\x80\xa8",
    b"Traceback (most recent call last):\n",
];

/// Reads `data` as log lines through buffers of a few sizes (so lines and characters are cut
/// across reads) and compares them with a model written from the module's contract: one line
/// per `\n` (and one for trailing bytes), a `\r` before the `\n` dropped, bytes that are not
/// UTF-8 written `\xNN`, a line longer than `MAX_LINE` cut there with a marker that counts
/// what was dropped.
pub(crate) fn log_lines(data: &[u8]) -> u64 {
    let expected = model(data);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    for capacity in [1, 7, 8 << 10] {
        let got = rt.block_on(async {
            let mut lines = LogLines::new(tokio::io::BufReader::with_capacity(capacity, data));
            let mut out = Vec::new();
            while let Some(line) = lines.next_line().await {
                out.push(line);
                assert!(out.len() <= expected.len(), "more lines than the model");
            }
            out
        });
        assert_eq!(
            got.len(),
            expected.len(),
            "lines read with a {capacity}-byte buffer"
        );
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g, e, "line {i} read with a {capacity}-byte buffer");
        }
    }
    let cut = expected.iter().any(|l| l.contains(" … [line cut at "));
    let escaped = data.utf8_chunks().any(|c| !c.invalid().is_empty());
    Sig::new("log lines")
        .size(expected.len())
        .flag(cut)
        .flag(escaped)
        .flag(data.contains(&b'\r'))
        .flag(data.last() == Some(&b'\n'))
        .done()
}

/// The lines `data` should read as, built independently of the module's code.
fn model(data: &[u8]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let keep = line.len().min(MAX_LINE);
        let mut kept = &line[..keep];
        if let Some(stripped) = kept.strip_suffix(b"\r") {
            kept = stripped;
        }
        let mut text = escape(kept);
        if line.len() > MAX_LINE {
            let _ = write!(
                text,
                " … [line cut at {MAX_LINE} bytes; {} more dropped]",
                line.len() - MAX_LINE
            );
        }
        lines.push(text);
        rest = next;
    }
    lines
}

/// Valid UTF-8 as it is, every other byte as `\xNN` (invalid sequences as `from_utf8`
/// delimits them).
fn escape(mut bytes: &[u8]) -> String {
    let mut out = String::new();
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (good, bad) = bytes.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                let n = e.error_len().unwrap_or(bad.len());
                for b in &bad[..n] {
                    let _ = write!(out, "\\x{b:02x}");
                }
                bytes = &bad[n..];
            }
        }
    }
}
