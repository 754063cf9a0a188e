//! What the host reads from a worker: length-prefixed frames on its reply pipe (`frame.rs`)
//! and the JSON in each (`protocol.rs`, decoded as `worker.rs` does).

use morel_runtime_process::protocol::{RaisedError, ResponseMeta, WorkerFrame};
use morel_runtime_process::read_frame_for_fuzzing;

use crate::Sig;

pub(crate) const TOKENS: &[&[u8]] = &[
    b"{\"type\":\"InvokeResult\",\"id\":1,\"ok\":true,\"result\":",
    b"{\"type\":\"InvokeResult\",\"id\":1,\"ok\":false,\"error\":{\"message\":\"x\",\"type\":\"ValueError\",\"traceback\":null}}",
    b"{\"type\":\"MetaData\",\"functions\":[{\"name\":\"f\",\"params\":[\"a\"],\"is_async\":false}]}",
    b"{\"type\":\"LoadError\",\"error\":\"boom\"}",
    b"\"type\"",
    b"\"id\":",
    b"\"ok\":",
    b"\"result\":",
    b"\"error\":",
    b"\"functions\":",
    b"\"params\":",
    b"\x00\x00\x00\x02{}",
    b"\x00\x00\x00\x00",
    b"\x04\x00\x00\x00",
    b"\x04\x00\x00\x01",
    b"\xff\xff\xff\xff",
];

/// The host's frame limit (`MAX_FRAME` in frame.rs).
const MAX_FRAME: usize = 64 << 20;

/// A byte stream from a worker, read frame by frame as the reply reader does (through a
/// `BufReader`, here with a small and a large buffer): every frame must be exactly what its
/// length prefix says, a length past the limit or past the end of the stream an error, and
/// the end of the stream a clean end. Each frame is then decoded as the host decodes it.
pub(crate) fn worker_frames(data: &[u8]) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    let mut sig = Sig::new("frames");
    for capacity in [3, 64 << 10] {
        let frames = rt.block_on(async {
            let mut reader = tokio::io::BufReader::with_capacity(capacity, data);
            let mut buf = Vec::new();
            let mut pos = 0usize;
            let mut frames = Vec::new();
            loop {
                let got = read_frame_for_fuzzing(&mut reader, &mut buf).await;
                let rest = &data[pos..];
                // What the stream holds at this point: a frame, an error, or the end.
                if rest.len() < 4 {
                    // Fewer than 4 bytes left (a cut length prefix included) read as the end.
                    assert!(
                        matches!(got, Ok(None)),
                        "{} bytes left: {got:?}",
                        rest.len()
                    );
                    frames.push("end".to_owned());
                    break;
                }
                let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                if len > MAX_FRAME {
                    assert!(
                        got.is_err(),
                        "a frame of {len} bytes past the limit: {got:?}"
                    );
                    frames.push("too long".to_owned());
                    break;
                }
                if rest.len() - 4 < len {
                    assert!(got.is_err(), "a cut frame: {got:?}");
                    frames.push("cut".to_owned());
                    break;
                }
                assert!(matches!(got, Ok(Some(()))), "a whole frame: {got:?}");
                assert_eq!(buf, &rest[4..4 + len], "the frame's bytes");
                pos += 4 + len;
                frames.push(decode(&buf));
            }
            frames
        });
        if capacity == 3 {
            // Which kinds of frame the stream held, not how many or in which order.
            let kinds: std::collections::BTreeSet<&str> = frames
                .iter()
                .map(|f| f.split(' ').next().unwrap_or(""))
                .collect();
            sig = sig.size(frames.len().min(4));
            for k in kinds {
                sig = sig.str(k);
            }
        }
    }
    sig.done()
}

/// One frame's JSON, decoded as `worker.rs` does.
pub(crate) fn worker_frame_json(data: &[u8]) -> u64 {
    Sig::new("frame json").str(&decode(data)).done()
}

/// Decodes a frame as the host does and says what it was (for the outcome).
fn decode(frame: &[u8]) -> String {
    let f = match serde_json::from_slice::<WorkerFrame>(frame) {
        Ok(f) => f,
        Err(e) => return format!("unreadable: {}", crate::sig::message_class(&e.to_string())),
    };
    match f.kind.as_str() {
        "InvokeResult" if f.ok => {
            if let Some(result) = &f.result {
                // The result is passed on as the call's answer, as it came: it must be JSON.
                let text = result.get();
                assert!(
                    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok(),
                    "a raw result that is not JSON: {text:?}"
                );
            }
            // A function's response (the SDK's `Response`), read as `worker.rs` reads it: a
            // malformed one fails its call, never the frame.
            let response = match f.response.clone() {
                None | Some(serde_json::Value::Null) => "none".to_owned(),
                Some(v) => match serde_json::from_value::<ResponseMeta>(v) {
                    Ok(r) => format!("{} {} {}", r.status / 100, r.headers.len().min(3), r.raw),
                    Err(e) => format!("unreadable {}", crate::sig::message_class(&e.to_string())),
                },
            };
            format!("result {} response {response}", f.result.is_some())
        }
        "InvokeResult" => {
            let raised = f.error.clone().map(serde_json::from_value::<RaisedError>);
            match raised {
                Some(Ok(e)) => format!(
                    "raised {} {} {}",
                    e.kind == "NotFound",
                    e.message.is_empty(),
                    e.traceback.is_some()
                ),
                Some(Err(e)) => format!(
                    "raised, unreadable: {}",
                    crate::sig::message_class(&e.to_string())
                ),
                None => "raised nothing".to_owned(),
            }
        }
        "MetaData" => {
            let mut signatures = 0;
            for m in &f.functions {
                // What the pool registers: names and parameters as they came; the gateway
                // builds each function's binding from them.
                let _ = (m.name.len(), m.params.len(), m.is_async);
                let b = morel_gateway::Binding::new(
                    &m.name,
                    m.params.clone(),
                    m.signature.clone(),
                    false,
                );
                signatures += usize::from(m.signature.is_some());
                let _ = (b.wants_request(), b.signature_text().len());
            }
            format!(
                "metadata {} {}",
                f.functions.len().min(4),
                signatures.min(2)
            )
        }
        "LoadError" => match &f.error {
            Some(serde_json::Value::String(_)) => "load error text".to_owned(),
            Some(other) => format!("load error {}", other.to_string().len().min(1)),
            None => "load error none".to_owned(),
        },
        _ => "other kind".to_owned(),
    }
}
