//! Test helpers: a uart driven the way a polling guest driver does.

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bhyve_devices::{IrqLine, Uart};

pub(crate) struct NoIrq;
impl IrqLine for NoIrq {
    fn set_level(&self, _high: bool) {}
}

const LSR: u64 = 5;
const LSR_RXRDY: u8 = 0x01;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;
const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn uart() -> (Arc<Mutex<Uart>>, Arc<NoIrq>) {
    let irq = Arc::new(NoIrq);
    let dev = Arc::new(Mutex::new(Uart::new(irq.clone())));
    dev.lock().unwrap().write_reg(2, 0x01); // FCR: FIFOs on
    (dev, irq)
}

/// Writes every byte, waiting for THRE like a polling driver.
pub(crate) fn guest_write_all(dev: &Mutex<Uart>, data: &[u8]) {
    let deadline = Instant::now() + TIMEOUT;
    for b in data {
        loop {
            let mut u = dev.lock().unwrap();
            if u.read_reg(LSR) & LSR_THRE != 0 {
                u.write_reg(0, *b);
                break;
            }
            drop(u);
            assert!(Instant::now() < deadline, "transmitter stayed busy");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Waits for LSR.TEMT: the backend took every byte the guest wrote.
pub(crate) fn guest_wait_drained(dev: &Mutex<Uart>) {
    let deadline = Instant::now() + TIMEOUT;
    while dev.lock().unwrap().read_reg(LSR) & LSR_TEMT == 0 {
        assert!(Instant::now() < deadline, "output never drained");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Reads `n` bytes, waiting for LSR.DR.
pub(crate) fn guest_read_all(dev: &Mutex<Uart>, n: usize) -> Vec<u8> {
    let deadline = Instant::now() + TIMEOUT;
    let mut got = Vec::new();
    while got.len() < n {
        let mut u = dev.lock().unwrap();
        if u.read_reg(LSR) & LSR_RXRDY != 0 {
            got.push(u.read_reg(0));
            continue;
        }
        drop(u);
        assert!(Instant::now() < deadline, "only got {got:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    got
}

/// Reads exactly `n` bytes from `fd` within the timeout.
pub(crate) fn read_exact_timeout(fd: RawFd, n: usize) -> Vec<u8> {
    let deadline = Instant::now() + TIMEOUT;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < n {
        let mut p = [libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        crate::sys::poll(&mut p, 100).unwrap();
        if p[0].revents != 0 {
            let want = (n - got.len()).min(buf.len());
            let k = crate::sys::read(fd, &mut buf[..want]).unwrap();
            got.extend_from_slice(&buf[..k]);
        }
        assert!(Instant::now() < deadline, "only got {got:?}");
    }
    got
}
