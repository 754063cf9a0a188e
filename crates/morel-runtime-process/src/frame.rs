//! Frames: a 4-byte big-endian length, then that many bytes of JSON.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest frame either side may send; a bigger one means a broken or hostile peer.
pub const MAX_FRAME: usize = 64 << 20;

/// Appends `msg` as one frame: JSON written in place behind a length filled in afterwards.
pub fn encode(msg: &impl serde::Serialize, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    if let Err(e) = serde_json::to_writer(&mut *out, msg) {
        out.truncate(start);
        return Err(e);
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<()>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {MAX_FRAME} byte limit"),
        ));
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf).await?;
    Ok(Some(()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_limits() {
        let mut out = Vec::new();
        encode(&serde_json::json!({"a": 1}), &mut out).unwrap();
        encode(&serde_json::json!([]), &mut out).unwrap();
        let mut r = &out[..];
        let mut buf = Vec::new();
        assert!(read(&mut r, &mut buf).await.unwrap().is_some());
        assert_eq!(buf, b"{\"a\":1}");
        assert!(read(&mut r, &mut buf).await.unwrap().is_some());
        assert_eq!(buf, b"[]");
        assert!(read(&mut r, &mut buf).await.unwrap().is_none());
        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        let mut r = &huge[..];
        assert!(read(&mut r, &mut buf).await.is_err());
        // A truncated frame is an error, not a clean end.
        let mut r = &[0u8, 0, 0, 5, b'{'][..];
        assert!(read(&mut r, &mut buf).await.is_err());
    }
}
