//! The mutator: turns a corpus entry into a new input with a few random edits.

/// Tokens every target gets: the punctuation of JSON, HTTP and paths, escapes, huge and odd
/// numbers, and bytes that are not UTF-8.
pub const COMMON_TOKENS: &[&[u8]] = &[
    b"[",
    b"]",
    b"{",
    b"}",
    b"\"",
    b"\\",
    b"\\\"",
    b":",
    b",",
    b"\r\n",
    b"\n",
    b"\r\n\r\n",
    b"\r",
    b"\0",
    b" ",
    b"\t",
    b"Content-Length:",
    b"Content-Length: 18446744073709551616\r\n",
    b"null",
    b"true",
    b"false",
    b"\\u0000",
    b"\\ud800",
    b"\\udc00\\ud800",
    b"\\uffff",
    b"/",
    b"..",
    b"../",
    b"./",
    b"%",
    b"%00",
    b"\xff",
    b"\xfe\xff",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe2\x82",
    b"\xc3",
    b"\xe2\x80\xa8",
];

/// Numbers, as text, that parsers get wrong: limits of integer types, just past them, floats
/// that overflow, signs and radix prefixes that digit-only fields must refuse.
pub const NUMBERS: &[&[u8]] = &[
    b"0",
    b"-0",
    b"1",
    b"-1",
    b"+1",
    b"00",
    b"007",
    b"127",
    b"128",
    b"255",
    b"256",
    b"65535",
    b"65536",
    b"2147483647",
    b"2147483648",
    b"4294967295",
    b"4294967296",
    b"67108864",
    b"67108865",
    b"9223372036854775807",
    b"9223372036854775808",
    b"-9223372036854775808",
    b"18446744073709551615",
    b"18446744073709551616",
    b"99999999999999999999",
    b"999999999999999999999999999999999999999",
    b"1e309",
    b"-1e309",
    b"1e-400",
    b"1.7976931348623157e308",
    b"5e-324",
    b"2.2250738585072011e-308",
    b"0.1",
    b"1E400",
    b"0x10",
    b"1_000",
    b"NaN",
    b"inf",
    b"-inf",
    b"nan",
];

/// Integers written as binary (lengths in frames and zip headers).
const BINARY: &[u64] = &[
    0,
    1,
    2,
    4,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x10_0000,
    0x400_0000,
    0x400_0001,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0xffff_ffff_ffff_ffff,
];

/// Bytes worth setting one at a time.
const BYTES: &[u8] = &[
    0, 1, b'\t', b'\n', b'\r', b' ', b'"', b'%', b'\'', b'+', b',', b'-', b'.', b'/', b'0', b'9',
    b':', b';', b'=', b'?', b'@', b'[', b'\\', b']', b'{', b'}', 0x7f, 0x80, 0xc0, 0xff,
];

/// Makes new inputs from corpus entries.
pub struct Mutator {
    rng: fastrand::Rng,
    tokens: Vec<&'static [u8]>,
    max_len: usize,
}

impl Mutator {
    pub fn new(seed: u64, target_tokens: &'static [&'static [u8]], max_len: usize) -> Self {
        let mut tokens: Vec<&'static [u8]> = COMMON_TOKENS.to_vec();
        tokens.extend_from_slice(target_tokens);
        Mutator {
            rng: fastrand::Rng::with_seed(seed),
            tokens,
            max_len: max_len.max(1),
        }
    }

    /// A random index below `n` (which must not be 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.rng.usize(..n.max(1))
    }

    /// A new input: `base` with one to eight edits; `other` (another corpus entry) is the
    /// material for splicing.
    pub fn mutate(&mut self, base: &[u8], other: &[u8]) -> Vec<u8> {
        let mut data = base.to_vec();
        // Mostly one or two edits, sometimes many.
        let edits = 1 + self.rng.usize(..8).min(self.rng.usize(..8));
        for _ in 0..edits {
            self.edit(&mut data, other);
            if data.len() > self.max_len {
                // Cut the excess out of a random place.
                let excess = data.len() - self.max_len;
                let cut = self.rng.usize(..=self.max_len);
                data.drain(cut..cut + excess);
            }
        }
        data
    }

    /// A position in `data` to insert at (`0..=len`).
    fn gap(&mut self, data: &[u8]) -> usize {
        self.rng.usize(..=data.len())
    }

    /// A range of `data` of at most `max` bytes, biased to short ones; empty data gives 0..0.
    fn range(&mut self, data: &[u8], max: usize) -> std::ops::Range<usize> {
        if data.is_empty() {
            return 0..0;
        }
        let start = self.rng.usize(..data.len());
        let room = (data.len() - start).min(max).max(1);
        let len = 1 + self.rng.usize(..room).min(self.rng.usize(..room));
        start..start + len
    }

    fn edit(&mut self, data: &mut Vec<u8>, other: &[u8]) {
        match self.rng.u8(..19) {
            // Flip one bit.
            0 if !data.is_empty() => {
                let i = self.rng.usize(..data.len());
                data[i] ^= 1 << self.rng.u8(..8);
            }
            // Set a byte to a random or an interesting value.
            1 if !data.is_empty() => {
                let i = self.rng.usize(..data.len());
                data[i] = self.rng.u8(..);
            }
            2 if !data.is_empty() => {
                let i = self.rng.usize(..data.len());
                data[i] = BYTES[self.rng.usize(..BYTES.len())];
            }
            // Add or subtract a little.
            3 if !data.is_empty() => {
                let i = self.rng.usize(..data.len());
                let d = self.rng.u8(1..=16);
                data[i] = if self.rng.bool() {
                    data[i].wrapping_add(d)
                } else {
                    data[i].wrapping_sub(d)
                };
            }
            // Insert random bytes.
            4 => {
                let at = self.gap(data);
                let n = 1 + self.rng.usize(..8);
                let bytes: Vec<u8> = (0..n).map(|_| self.rng.u8(..)).collect();
                data.splice(at..at, bytes);
            }
            // Delete a range.
            5 if !data.is_empty() => {
                let r = self.range(data, 64);
                data.drain(r);
            }
            // Duplicate a range somewhere.
            6 if !data.is_empty() => {
                let r = self.range(data, 64);
                let chunk = data[r].to_vec();
                let at = self.gap(data);
                data.splice(at..at, chunk);
            }
            // Repeat a range many times (deep nesting, long lines, many headers or entries).
            7 if !data.is_empty() => {
                let r = self.range(data, 16);
                let chunk = data[r.clone()].to_vec();
                let times = 1 + self
                    .rng
                    .usize(..=self.max_len.min(4096) / chunk.len().max(1));
                let times = times.min(1 + self.rng.usize(..300));
                let mut repeated = Vec::with_capacity(chunk.len() * times);
                for _ in 0..times {
                    repeated.extend_from_slice(&chunk);
                }
                data.splice(r.end..r.end, repeated);
            }
            // Splice in a piece of another entry.
            8 if !other.is_empty() => {
                let r = self.range(other, 256);
                let at = self.gap(data);
                data.splice(at..at, other[r].iter().copied());
            }
            // Cross over: this entry's start, the other's end.
            9 if !other.is_empty() => {
                let cut = self.gap(data);
                let from = self.rng.usize(..=other.len());
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            // Insert or write over with a token.
            10 | 11 => {
                let token = self.tokens[self.rng.usize(..self.tokens.len())];
                self.put(data, token);
            }
            // A number where digits were, or anywhere.
            12 => {
                let number = NUMBERS[self.rng.usize(..NUMBERS.len())];
                match digit_run(data, self.rng.usize(..=data.len())) {
                    Some(r) => {
                        data.splice(r, number.iter().copied());
                    }
                    None => self.put(data, number),
                }
            }
            // A binary integer, little- or big-endian, 2, 4 or 8 bytes wide.
            13 if !data.is_empty() => {
                let v = BINARY[self.rng.usize(..BINARY.len())];
                let width = [2usize, 4, 8][self.rng.usize(..3)];
                // The low `width` bytes of the value, in either order.
                let bytes = if self.rng.bool() {
                    v.to_le_bytes()[..width].to_vec()
                } else {
                    v.to_be_bytes()[8 - width..].to_vec()
                };
                let at = self.rng.usize(..data.len());
                let end = (at + width).min(data.len());
                data.splice(at..end, bytes);
            }
            // Truncate.
            14 if !data.is_empty() => {
                let at = self.rng.usize(..data.len());
                data.truncate(at);
            }
            // Swap two ranges' first bytes.
            15 if data.len() > 1 => {
                let a = self.rng.usize(..data.len());
                let b = self.rng.usize(..data.len());
                data.swap(a, b);
            }
            // Change a byte's case (header names, hex digits, keywords).
            16 if !data.is_empty() => {
                let i = self.rng.usize(..data.len());
                data[i] = if data[i].is_ascii_lowercase() {
                    data[i].to_ascii_uppercase()
                } else {
                    data[i].to_ascii_lowercase()
                };
            }
            // Replace the whole input with a piece of itself.
            17 if data.len() > 2 => {
                let r = self.range(data, data.len());
                *data = data[r].to_vec();
            }
            _ => {
                // The edit did not apply to this input: insert a token instead.
                let token = self.tokens[self.rng.usize(..self.tokens.len())];
                let at = self.gap(data);
                data.splice(at..at, token.iter().copied());
            }
        }
    }

    /// Inserts `token`, or writes it over what is there.
    fn put(&mut self, data: &mut Vec<u8>, token: &[u8]) {
        let at = self.gap(data);
        if self.rng.bool() {
            data.splice(at..at, token.iter().copied());
        } else {
            let end = (at + token.len()).min(data.len());
            data.splice(at..end, token.iter().copied());
        }
    }
}

/// The run of ASCII digits (with a leading `-`) around or after `from`, if there is one.
fn digit_run(data: &[u8], from: usize) -> Option<std::ops::Range<usize>> {
    let start = from + data.get(from..)?.iter().position(u8::is_ascii_digit)?;
    let mut start = start;
    while start > 0 && (data[start - 1].is_ascii_digit() || data[start - 1] == b'-') {
        start -= 1;
    }
    let len = data[start..]
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b'-'))
        .unwrap_or(data.len() - start);
    Some(start..start + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutants_stay_within_the_length_limit() {
        let mut m = Mutator::new(7, &[], 64);
        let mut data = b"{\"a\": [1, 2, 3]}".to_vec();
        for _ in 0..10_000 {
            data = m.mutate(&data, b"GET / HTTP/1.1\r\n\r\n");
            assert!(data.len() <= 64);
            if data.is_empty() {
                data = b"[]".to_vec();
            }
        }
    }

    #[test]
    fn digit_runs_are_found() {
        assert_eq!(digit_run(b"a: 123\r\n", 0), Some(3..6));
        assert_eq!(digit_run(b"x=-5", 0), Some(2..4));
        assert_eq!(digit_run(b"none", 0), None);
    }
}
