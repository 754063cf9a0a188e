//! AssemblyScript: the generated entry that gives a user's `handle(input: string): string`
//! Morel's core ABI.
//!
//! The user's source is compiled as its own module file ([`USER_FILE`]); the entry
//! ([`ENTRY_FILE`], the only entry file, so only its exports are the module's) imports the
//! user's `handle` under another name and exports the raw ABI:
//!
//! - `memory`
//! - `alloc(len: i32) -> i32`: a fresh buffer of `len` bytes for the host to write the
//!   UTF-8 JSON input into;
//! - `handle(ptr: i32, len: i32) -> i64`: decodes the input, calls the user's function,
//!   encodes its result as UTF-8 and returns `(out_ptr << 32) | out_len` (both unsigned
//!   32-bit).
//!
//! Runtime `incremental` (AssemblyScript's default, a non-moving collector) so a long call
//! can free garbage; both buffers are pinned by globals until the next call. `--use abort=`
//! turns `abort` (a failed assertion or a thrown error) into a trap instead of an import, so
//! the module imports nothing and runs in any host that speaks the core ABI.

/// The file the user's source is written to.
pub(crate) const USER_FILE: &str = "main.ts";
/// The file the generated entry is written to.
pub(crate) const ENTRY_FILE: &str = "morel_entry.ts";
/// The generated entry.
pub(crate) const ENTRY_SOURCE: &str = include_str!("morel_entry.ts");

/// `asc` arguments before `--outFile`.
pub(crate) const ASC_ARGS: &[&str] = &[
    ENTRY_FILE,
    "--optimize",
    "--runtime",
    "incremental",
    "--use",
    "abort=",
    "--noColors",
];

/// Adds what the user needs to know when the error is in the generated entry: their file
/// does not export the function it calls.
pub(crate) fn explain_failure(text: String) -> String {
    if text.contains(ENTRY_FILE) {
        format!(
            "{text}\nnote: {ENTRY_FILE} is Morel's generated entry; your {USER_FILE} must contain \
             `export function handle(input: string): string`"
        )
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_imports_the_user_file() {
        let module = USER_FILE.trim_end_matches(".ts");
        assert!(ENTRY_SOURCE.contains(&format!("from \"./{module}\"")));
        assert!(ENTRY_SOURCE.contains("export function alloc(len: i32): i32"));
        assert!(ENTRY_SOURCE.contains("export function handle(ptr: i32, len: i32): i64"));
    }

    #[test]
    fn failures_in_the_entry_get_a_note() {
        let text = explain_failure("ERROR TS2305 in morel_entry.ts(10,10)".to_owned());
        assert!(text.contains("export function handle(input: string): string"));
        let text = explain_failure("ERROR in main.ts(1,1)".to_owned());
        assert_eq!(text, "ERROR in main.ts(1,1)");
    }
}
