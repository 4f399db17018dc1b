//! virtio-rnd (bhyve's `pci_virtio_rnd.c`): one queue whose writable
//! buffers are filled from the host's getrandom(2).

use std::sync::Arc;

use vm_memory::{Bytes, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::{serve_queue, types, wait_readable, Activation, ActiveQueues, VirtioDevice};
use crate::virtio::worker::Workers;

/// bhyve's ring size.
const QUEUE_SIZE: u16 = 64;
/// At most this many bytes per request: a guest cannot make us produce
/// unbounded entropy (or allocate) for one descriptor chain.
const MAX_REQUEST: usize = 64 << 10;

/// PCI class "other crypto controller" (bhyve's).
const CLASS_CRYPTO: (u8, u8, u8) = (0x10, 0x80, 0x00);

pub struct VirtioRnd {
    workers: Workers,
}

impl Default for VirtioRnd {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtioRnd {
    pub fn new() -> Self {
        VirtioRnd {
            workers: Workers::new(),
        }
    }

    /// Whether the host's entropy source works (bhyve refuses the device
    /// otherwise).
    pub fn host_source_ok() -> bool {
        let mut b = [0u8; 1];
        fill_random(&mut b)
    }
}

fn fill_random(buf: &mut [u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unfilled part of
        // `buf`, which getrandom writes at most.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        done += n as usize;
    }
    true
}

/// Serves every available request of the queue, a batch per queue-lock
/// hold; returns false once the device was reset.
fn drain(aq: &ActiveQueues, mem: &GuestMemoryMmap, buf: &mut [u8]) -> bool {
    serve_queue(aq, 0, mem, |chain| {
        let mut written = 0usize;
        for d in chain.writable() {
            let want = (d.len() as usize).min(MAX_REQUEST - written);
            if want == 0
                || !fill_random(&mut buf[..want])
                || mem.write_slice(&buf[..want], d.addr()).is_err()
            {
                break;
            }
            written += want;
        }
        written as u32
    })
}

fn worker(act: Activation, stop: Arc<EventFd>) {
    let aq = act.queues;
    let mut buf = vec![0u8; MAX_REQUEST];
    let Some(kick) = aq.kick(0) else { return };
    loop {
        if !drain(&aq, &act.mem, &mut buf) {
            return;
        }
        let ready = wait_readable(&[kick, &stop]);
        if ready.contains(&1) || aq.is_stopped() {
            return;
        }
        let _ = kick.read();
    }
}

impl VirtioDevice for VirtioRnd {
    fn device_type(&self) -> u16 {
        types::RNG
    }

    fn pci_class(&self) -> (u8, u8, u8) {
        CLASS_CRYPTO
    }

    fn queue_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        0
    }

    fn activate(&mut self, act: Activation) -> Result<(), String> {
        let stop = self.workers.begin()?;
        let s = stop.clone();
        self.workers.spawn("virtio-rnd", move || worker(act, s))?;
        Ok(())
    }

    fn reset(&mut self) {
        self.workers.stop();
    }
}
