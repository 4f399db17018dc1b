//! virtio-rnd (bhyve's `pci_virtio_rnd.c`): one queue whose writable
//! buffers are filled from the host's getrandom(2).

use std::sync::Arc;

use vm_memory::{Bytes, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::{serve_queue, types, wait_readable, Activation, ActiveQueues, VirtioDevice};
use crate::virtio::chain_io::MAX_SEGMENTS;
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
        // Every descriptor looked at counts, readable ones too: a table
        // of 65,535 would otherwise all be read under the queue lock.
        for d in chain.take(MAX_SEGMENTS).filter(|d| d.is_write_only()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::chain_io::indirect_chain_queue;
    use crate::virtio::VirtioInterrupt;
    use vm_memory::GuestAddress;

    struct NoSignal;
    impl VirtioInterrupt for NoSignal {
        fn signal_used(&self, _: u16) {}
        fn signal_config(&self) {}
    }

    /// Bytes written for a chain of `readable` empty device-readable
    /// descriptors, then a 16-byte device-writable one.
    fn written_after(readable: usize) -> u32 {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut table = vec![(0x80000, 0, false); readable];
        table.push((0x80000, 16, true));
        let q = indirect_chain_queue(&mem, &table);
        let aq = ActiveQueues::new(vec![q], Vec::new(), Arc::new(NoSignal));
        assert!(drain(&aq, &mem, &mut [0u8; MAX_REQUEST]));
        assert_eq!(
            mem.read_obj::<u16>(GuestAddress(0x3002)).unwrap(),
            1,
            "used"
        );
        mem.read_obj(GuestAddress(0x3008)).unwrap()
    }

    /// A chain is looked at for at most MAX_SEGMENTS descriptors: a
    /// writable buffer behind thousands of readable ones gets nothing.
    #[test]
    fn at_most_max_segments_descriptors_are_looked_at() {
        assert_eq!(written_after(10), 16);
        assert_eq!(written_after(MAX_SEGMENTS - 1), 16);
        assert_eq!(written_after(MAX_SEGMENTS), 0);
        assert_eq!(written_after(4000), 0);
    }
}
