//! Framing: `u32 big-endian length ‖ payload`, payload at most [`MAX_FRAME_LEN`] bytes.
//!
//! The length is checked before anything is allocated; a frame longer than the limit is an
//! error and the stream must be dropped (it can no longer be re-synchronised). Payload buffers
//! are zeroized when dropped: no message carries a UMK (SPEC §3 invariant 7), but requests carry
//! KMS envelopes and sealed records, and wiping costs nothing next to the copy.

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

/// Largest frame payload (SPEC §14: 256 KiB).
pub const MAX_FRAME_LEN: usize = 256 * 1024;

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("stream ended inside a frame ({got} of {expected} bytes)")]
    Truncated { got: usize, expected: usize },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame. `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Zeroizing<Vec<u8>>>, FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = reader.read(header.get_mut(got..).unwrap_or_default()).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated { got, expected: 4 })
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut payload = Zeroizing::new(vec![0u8; len]);
    let mut got = 0;
    while got < len {
        let n = reader.read(payload.get_mut(got..).unwrap_or_default()).await?;
        if n == 0 {
            return Err(FrameError::Truncated { got, expected: len });
        }
        got += n;
    }
    Ok(Some(payload))
}

/// Writes `payload` as one frame (the caller flushes).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    payload: &[u8],
) -> Result<(), FrameError> {
    if payload.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len: payload.len(), max: MAX_FRAME_LEN });
    }
    writer.write_all(&(payload.len() as u32).to_be_bytes()).await?;
    writer.write_all(payload).await?;
    Ok(())
}

/// Writes every queued payload as a frame until the queue closes or a write fails, flushing
/// only when the queue is momentarily empty (so a burst leaves in few syscalls). Each
/// connection's single writer task runs this, on both ends.
pub async fn write_queued<W, B>(writer: W, queue: &mut mpsc::Receiver<B>)
where
    W: AsyncWrite + Unpin,
    B: AsRef<[u8]>,
{
    let mut writer = BufWriter::new(writer);
    while let Some(frame) = queue.recv().await {
        if write_frame(&mut writer, frame.as_ref()).await.is_err() {
            return;
        }
        if queue.is_empty() && writer.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_limits() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello").await.unwrap();
        write_frame(&mut buf, b"").await.unwrap();
        let mut r = buf.as_slice();
        assert_eq!(read_frame(&mut r, 16).await.unwrap().unwrap().as_slice(), b"hello");
        assert_eq!(read_frame(&mut r, 16).await.unwrap().unwrap().as_slice(), b"");
        assert!(read_frame(&mut r, 16).await.unwrap().is_none());

        // Oversized: refused from the header alone (nothing allocated).
        let mut r: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut r, MAX_FRAME_LEN).await,
            Err(FrameError::TooLarge { len: 4294967295, .. })
        ));
        let mut r: &[u8] = &[0, 0, 0, 5, 1, 2];
        assert!(matches!(
            read_frame(&mut r, 16).await,
            Err(FrameError::Truncated { got: 2, expected: 5 })
        ));
        let mut r: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame(&mut r, 16).await,
            Err(FrameError::Truncated { got: 2, expected: 4 })
        ));
        assert!(write_frame(&mut Vec::new(), &vec![0; MAX_FRAME_LEN + 1]).await.is_err());
    }
}
