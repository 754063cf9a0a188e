//! Outcomes (the cheap signal the driver keeps new inputs by) and panic capture.

use std::cell::{Cell, RefCell};
use std::sync::Once;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over `data`.
pub(crate) fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)
    })
}

/// Builds an input's outcome: a hash of what the parser did with it (which branch, which kind
/// of error, the rough shape of what it accepted). Keep the parts coarse: every distinct
/// outcome keeps an input in the corpus, so an outcome must not grow with the input's bytes.
#[derive(Clone, Copy, Debug)]
pub struct Sig(u64);

impl Sig {
    pub fn new(tag: &str) -> Sig {
        Sig(fnv(tag.as_bytes()))
    }

    fn mix(self, bytes: &[u8]) -> Sig {
        let h = bytes.iter().fold(self.0 ^ 0xff, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)
        });
        Sig(h.wrapping_mul(FNV_PRIME))
    }

    /// A fixed string (a branch name, an error kind).
    pub fn str(self, s: &str) -> Sig {
        self.mix(s.as_bytes())
    }

    /// A small number, as is.
    pub fn num(self, n: u64) -> Sig {
        self.mix(&n.to_le_bytes())
    }

    pub fn flag(self, b: bool) -> Sig {
        self.num(u64::from(b))
    }

    /// A size, by its order of magnitude (0, 1, 2-3, 4-7, …).
    pub fn size(self, n: usize) -> Sig {
        self.num(u64::from(usize::BITS - n.leading_zeros()))
    }

    /// An error message with what the input put in it left out: digits, and anything quoted
    /// ("…", `…`, '…'), so a message tells its kind apart, not its values.
    pub fn message(self, text: &str) -> Sig {
        self.str(&message_class(text))
    }

    pub fn done(self) -> u64 {
        self.0
    }
}

/// `text` without digits and without what lies between its first and its last quote
/// character (`"`, `` ` `` or `'`): messages quote the input's text, and that text may hold
/// quote characters itself. At most 100 characters.
pub(crate) fn message_class(text: &str) -> String {
    let quotes: &[char] = &['"', '`', '\''];
    let (head, tail) = match (text.find(quotes), text.rfind(quotes)) {
        (Some(first), Some(last)) => (&text[..first], &text[last + 1..]),
        _ => (text, ""),
    };
    let mut out: String = head.chars().filter(|c| !c.is_ascii_digit()).collect();
    if tail.len() < text.len() - head.len() {
        out.push('…');
    }
    out.extend(tail.chars().filter(|c| !c.is_ascii_digit()));
    out.chars().take(100).collect()
}

thread_local! {
    /// Set while an input runs: its panic is captured here instead of printed.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that records the message and location of a panic on a thread
/// running an input, and leaves every other panic to the hook that was there before.
pub(crate) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CAPTURING.get() {
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_owned());
                let location = info.location().map_or_else(
                    || "unknown".to_owned(),
                    |l| format!("{}:{}:{}", l.file(), l.line(), l.column()),
                );
                PANIC.with(|p| *p.borrow_mut() = Some((message, location)));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f` with this thread's panics captured rather than printed.
pub(crate) fn capturing_panics<R>(f: impl FnOnce() -> R) -> R {
    PANIC.with(|p| p.borrow_mut().take());
    CAPTURING.set(true);
    let r = f();
    CAPTURING.set(false);
    r
}

/// The message and location of the last panic captured on this thread.
pub(crate) fn take_panic() -> Option<(String, String)> {
    PANIC.with(|p| p.borrow_mut().take())
}
