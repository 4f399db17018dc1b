//! QEMU's `isa-debugcon`: a one-byte I/O port whose writes go to a host
//! sink. SeaBIOS (port 0x402) and OVMF log there; it is not in bhyve, and
//! is configured with our `-l debugcon,PATH[,port=N]` extension.

use std::io::Write;

use crate::bus::BusDevice;

/// The port SeaBIOS and OVMF log to.
pub const DEBUGCON_DEFAULT_PORT: u16 = 0x402;
/// What reads return (QEMU's default `readback`), so a guest can detect
/// the port.
pub const DEBUGCON_READBACK: u8 = 0xe9;
/// Output is passed on per line, or when this much piled up without one.
const LINE_MAX: usize = 1024;

/// The device. Register it on the port bus at its port with length 1
/// (wider accesses are then not dispatched, as in QEMU).
pub struct Debugcon {
    sink: Box<dyn Write + Send>,
    line: Vec<u8>,
    failed: bool,
}

impl Debugcon {
    pub fn new(sink: Box<dyn Write + Send>) -> Self {
        Self {
            sink,
            line: Vec::with_capacity(LINE_MAX),
            failed: false,
        }
    }

    fn flush_line(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let r = self
            .sink
            .write_all(&self.line)
            .and_then(|()| self.sink.flush());
        self.line.clear();
        // A full disk must not stop the guest; say so once.
        if let Err(e) = r {
            if !self.failed {
                log::warn!("debugcon: output lost: {e}");
                self.failed = true;
            }
        }
    }
}

impl BusDevice for Debugcon {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(DEBUGCON_READBACK);
    }

    fn write(&mut self, _base: u64, _offset: u64, data: &[u8]) {
        let Some(&b) = data.first() else {
            return;
        };
        self.line.push(b);
        if b == b'\n' || self.line.len() >= LINE_MAX {
            self.flush_line();
        }
    }
}

impl Drop for Debugcon {
    fn drop(&mut self) {
        self.flush_line();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn out(s: &Shared) -> String {
        String::from_utf8(s.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn lines_reach_the_sink_and_reads_give_readback() {
        let sink = Shared::default();
        let mut d = Debugcon::new(Box::new(sink.clone()));
        let base = u64::from(DEBUGCON_DEFAULT_PORT);
        for b in b"SeaBIOS (version 1.16)\nFound" {
            d.write(base, 0, &[*b]);
        }
        assert_eq!(out(&sink), "SeaBIOS (version 1.16)\n");
        let mut r = [0u8; 1];
        d.read(base, 0, &mut r);
        assert_eq!(r, [0xe9]);
        // The unfinished line is not lost when the VM stops.
        drop(d);
        assert_eq!(out(&sink), "SeaBIOS (version 1.16)\nFound");
    }

    #[test]
    fn long_lines_are_passed_on_in_pieces() {
        let sink = Shared::default();
        let mut d = Debugcon::new(Box::new(sink.clone()));
        for _ in 0..LINE_MAX + 5 {
            d.write(0x402, 0, b"x");
        }
        assert_eq!(out(&sink).len(), LINE_MAX);
    }

    #[test]
    fn sink_errors_do_not_stop_the_guest() {
        let mut d = Debugcon::new(Box::new(Broken));
        for b in b"a\nb\n" {
            d.write(0x402, 0, &[*b]);
        }
        assert!(d.failed);
        d.write(0x402, 0, &[]);
    }
}
