//! Frame decoder (`u32 BE length ‖ payload`, ≤ 256 KiB): any byte stream, delivered in
//! fuzzer-chosen read sizes, must give frames, a clean end, or a typed error — never a panic or
//! an allocation beyond the limit — and every frame must re-encode to exactly the bytes it
//! consumed.
#![no_main]

use std::pin::Pin;
use std::task::{Context, Poll};

use libfuzzer_sys::fuzz_target;
use signer_protocol::frame::{MAX_FRAME_LEN, read_frame, write_frame};
use tokio::io::{AsyncRead, ReadBuf};

/// Hands out at most `chunk` bytes per read, like a socket would.
struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.chunk.min(buf.remaining()).min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = tail;
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else { return };
    // A small limit as well as the real one, so the too-large path is reached with small inputs.
    let max = if chunk & 0x80 == 0 { MAX_FRAME_LEN } else { 64 };
    let mut reader = Trickle { data: stream, chunk: usize::from(chunk & 0x7f).max(1) };
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(r) => r,
        Err(_) => return,
    };
    runtime.block_on(async {
        let mut consumed = 0;
        loop {
            let before = reader.data.len();
            match read_frame(&mut reader, max).await {
                Ok(Some(payload)) => {
                    assert!(payload.len() <= max);
                    let used = before - reader.data.len();
                    let mut encoded = Vec::new();
                    write_frame(&mut encoded, &payload).await.unwrap();
                    assert_eq!(encoded, stream[consumed..consumed + used]);
                    consumed += used;
                }
                Ok(None) => {
                    assert_eq!(consumed, stream.len());
                    break;
                }
                Err(_) => break,
            }
        }
    });
});
