//! The POST diagnostic port, after bhyve's `post.c`.
//!
//! bhyve answers byte reads of port 0x84 with 0xff so that firmware and
//! OSes probing the POST card range find "nothing there" instead of
//! stopping the VM under `-e`; it declares the port as a system resource
//! of the LPC bridge (the DSDT's PNP0C02 device lists it).
//!
//! bhyve registers the port for reads only: a write is unclaimed there and
//! stops the VM under `-e`. Our bus has no direction, so writes are taken
//! and dropped. Port 0x80 (Linux's I/O delay port) is not POST's in bhyve
//! and stays unclaimed.

use crate::BusDevice;

/// bhyve's POST port.
pub const POST_PORT: u64 = 0x84;
pub const POST_PORT_LEN: u64 = 1;

/// What a read returns: "no card".
const POST_READ: u8 = 0xff;

#[derive(Debug, Default)]
pub struct Post;

impl Post {
    pub fn new() -> Self {
        Post
    }
}

impl BusDevice for Post {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        // bhyve fails wider reads; like our other malformed accesses they
        // read as all ones, which is also what a byte read returns.
        data.fill(POST_READ);
    }

    fn write(&mut self, _base: u64, _offset: u64, data: &[u8]) {
        log::trace!("post: {data:02x?} dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Bus;
    use std::sync::{Arc, Mutex};

    #[test]
    fn reads_ff_and_takes_writes() {
        let bus = Bus::new();
        bus.insert(POST_PORT, POST_PORT_LEN, Arc::new(Mutex::new(Post::new())))
            .unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(POST_PORT, &mut b));
        assert_eq!(b, [0xff]);
        assert!(bus.write(POST_PORT, &[0x12]));
        assert!(bus.read(POST_PORT, &mut b));
        assert_eq!(b, [0xff], "a write does not change what reads return");
        // Only 0x84 is POST's: 0x80 and a word at 0x84 are not claimed.
        assert!(!bus.read(0x80, &mut b));
        let mut w = [0u8; 2];
        assert!(!bus.read(POST_PORT, &mut w));
    }
}
