//! The targets, one module per parser family.

mod args;
mod bundle;
mod frames;
mod http;
mod loglines;
mod manifest;

use crate::Target;

const MIB: usize = 1 << 20;

pub(crate) static ALL: &[Target] = &[
    Target {
        name: "lane_head",
        about: "the fast lane's request heads (httparse, Content-Length, the route plan) and the head it forwards",
        run: http::lane_head,
        tokens: http::REQUEST_TOKENS,
        max_len: 8 << 10,
        alloc_fixed: 4 * MIB,
        alloc_per_byte: 64,
    },
    Target {
        name: "upstream_head",
        about: "an instance's answer head as the lane rewrites it, and a chunked body after it",
        run: http::upstream_head,
        tokens: http::ANSWER_TOKENS,
        max_len: 8 << 10,
        alloc_fixed: 4 * MIB,
        alloc_per_byte: 64,
    },
    Target {
        name: "call_args",
        about: "a call body bound to arguments (bind_args), check_depth and check_json",
        run: args::call_args,
        tokens: args::TOKENS,
        max_len: 16 << 10,
        alloc_fixed: 4 * MIB,
        alloc_per_byte: 256,
    },
    Target {
        name: "worker_frames",
        about: "length-prefixed frames read from a worker's reply pipe, each decoded as the host does",
        run: frames::worker_frames,
        tokens: frames::TOKENS,
        max_len: 16 << 10,
        // A frame's length is read before its bytes: the host takes up to its 64 MiB frame
        // limit for a 4-byte header (documented; see docs/fuzzing.md).
        alloc_fixed: 64 * MIB + 4 * MIB,
        alloc_per_byte: 256,
    },
    Target {
        name: "worker_frame_json",
        about: "one worker frame's JSON (WorkerFrame, RaisedError, FunctionMeta)",
        run: frames::worker_frame_json,
        tokens: frames::TOKENS,
        max_len: 16 << 10,
        alloc_fixed: 4 * MIB,
        alloc_per_byte: 256,
    },
    Target {
        name: "log_lines",
        about: "a workload's output read as log lines (LogLines: line cut, \\xNN escapes)",
        run: loglines::log_lines,
        tokens: loglines::TOKENS,
        max_len: 40 << 10,
        alloc_fixed: 4 * MIB,
        alloc_per_byte: 64,
    },
    Target {
        name: "bundle_extract",
        about: "bundle zips extracted to a temporary directory (extract, ExtractLimits::default())",
        run: bundle::bundle_extract,
        tokens: bundle::TOKENS,
        max_len: 64 << 10,
        // Deflate expands up to about 1032 to 1; contents stream to disk in 64 KiB pieces.
        alloc_fixed: 16 * MIB,
        alloc_per_byte: 256,
    },
    Target {
        name: "upload_zip",
        about: "uploaded zips read in memory (read_untrusted_zip), and manifest.json read from a bundle (read_entry, Manifest::from_json)",
        run: bundle::upload_zip,
        tokens: bundle::TOKENS,
        max_len: 64 << 10,
        // Contents are held in memory, up to ExtractLimits' 512 MiB; deflate expands up to
        // about 1032 to 1, and a growing Vec may hold twice that for a moment.
        alloc_fixed: 16 * MIB,
        alloc_per_byte: 2200,
    },
    Target {
        name: "manifest_json",
        about: "manifest.json (Manifest::from_json, validate, and a round trip)",
        run: manifest::manifest_json,
        tokens: manifest::MANIFEST_TOKENS,
        max_len: 16 << 10,
        alloc_fixed: 4 * MIB,
        alloc_per_byte: 512,
    },
    Target {
        name: "morel_toml",
        about: "morel.toml, the project file (toml_config::parse)",
        run: manifest::morel_toml,
        tokens: manifest::TOML_TOKENS,
        max_len: 16 << 10,
        alloc_fixed: 4 * MIB,
        alloc_per_byte: 512,
    },
    Target {
        name: "metacall_json",
        about: "metacall.json, seed 000's project description (language, scripts, path)",
        run: manifest::metacall_json,
        tokens: manifest::METACALL_TOKENS,
        max_len: 16 << 10,
        alloc_fixed: 4 * MIB,
        alloc_per_byte: 512,
    },
];
