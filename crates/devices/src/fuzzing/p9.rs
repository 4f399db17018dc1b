//! virtio-9p: arbitrary T-messages through the 9P2000.L server against
//! a fresh share per input, which must stay confined to it.

use std::fs;
use std::sync::Arc;

use super::{Cursor, TmpDir};
use crate::virtio::p9::server::{Server, MAX_MSIZE};
use crate::virtio::p9::share::Share;
use crate::virtio::p9::wire::HEADER;

/// Messages handled per input.
const MAX_MESSAGES: usize = 64;
/// Message type that passes the next `u16`-counted bytes through as
/// they are, size field and all.
const RAW: u8 = 0xff;

/// Input: flags (1: read-only share), then messages `(type: u8, tag:
/// u16, len: u16)` and `len` body bytes, which the harness frames with a
/// correct size (or, for type 0xff, `len` raw bytes). The share holds
/// `hello` and `sub/inner/`; beside it lies `outside/secret`.
pub fn virtio_p9(data: &[u8]) {
    let mut c = Cursor(data);
    let Some(flags) = c.u8() else { return };
    let Some(tmp) = TmpDir::new("p9") else { return };
    let (share, outside) = (tmp.0.join("share"), tmp.0.join("outside"));
    let made = fs::create_dir_all(share.join("sub/inner"))
        .and_then(|_| fs::create_dir(&outside))
        .and_then(|_| fs::write(outside.join("secret"), b"SECRET"))
        .and_then(|_| fs::write(share.join("hello"), b"hello, world\n"));
    if made.is_err() {
        return;
    }
    let Ok(s) = Share::open(&share, flags & 1 != 0) else {
        return;
    };
    let mut server = Server::new(Arc::new(s));
    for _ in 0..MAX_MESSAGES {
        let (Some(ty), Some(tag), Some(len)) = (c.u8(), c.u16(), c.u16()) else {
            break;
        };
        let body = c.take(len.into());
        let msg = if ty == RAW {
            body.to_vec()
        } else {
            let mut m = ((HEADER + body.len()) as u32).to_le_bytes().to_vec();
            m.push(ty);
            m.extend_from_slice(&tag.to_le_bytes());
            m.extend_from_slice(body);
            m
        };
        let Some(r) = server.handle(&msg) else {
            assert!(
                msg.len() < HEADER,
                "no answer to a {}-byte message",
                msg.len()
            );
            continue;
        };
        assert!(
            r.len() >= HEADER && r.len() <= MAX_MSIZE as usize,
            "{}-byte reply",
            r.len()
        );
        let size = u32::from_le_bytes([r[0], r[1], r[2], r[3]]) as usize;
        assert_eq!(size, r.len(), "reply's size field");
        assert_eq!(r[5..7], msg[5..7], "reply's tag");
    }
    drop(server);
    // Nothing may have appeared, or changed, beside the share.
    let mut names: Vec<_> = fs::read_dir(&tmp.0)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    names.sort();
    assert_eq!(names, ["outside", "share"], "entries beside the share");
    let inside: Vec<_> = fs::read_dir(&outside)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(inside, ["secret"], "entries of outside/");
    assert_eq!(
        fs::read(outside.join("secret")).ok().as_deref(),
        Some(&b"SECRET"[..])
    );
}
