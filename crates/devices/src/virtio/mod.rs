//! virtio devices (bhyve's `virtio.c` and `pci_virtio_*.c`).
//!
//! A device ([`VirtioDevice`]) is a pure request processor: it declares
//! its type, queues, features and configuration space, and when the
//! driver sets DRIVER_OK it is handed an [`Activation`]: guest memory and
//! the [`ActiveQueues`] its workers drain. The transport
//! ([`pci::VirtioPci`]) does everything else: the legacy (0.9.5) I/O
//! registers bhyve offers and the modern (1.x) capabilities current
//! drivers prefer, feature negotiation, reset, doorbells and interrupts.
//!
//! Threads and locks. A device's workers run outside the vCPU threads.
//! They take one queue's lock at a time ([`ActiveQueues::lock`]) and
//! signal interrupts only after releasing it; the transport resets a
//! device (under the PCI function's lock) by stopping its
//! `ActiveQueues`, which waits for every queue lock to be free and
//! makes later `lock` calls fail. So after a reset no worker touches the
//! rings, and no lock cycle exists: function → queue, never back.
//! Storage devices then wait (bounded) for the requests their backend
//! still holds ([`InFlight`], which states the lock order); a signal
//! waiting for the function gives up once its queues are stopped.

pub mod blk;
mod chain_io;
pub mod console;
#[cfg(test)]
mod drain_tests;
pub mod inflight;
pub mod input;
mod log_limit;
pub mod net;
pub mod p9;
pub mod pci;
pub mod rnd;
pub mod scsi;
#[cfg(test)]
mod test_driver;
#[cfg(test)]
mod test_log;
#[cfg(test)]
mod tests;
pub mod transport;
pub mod worker;

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

pub use inflight::InFlight;
pub use net::VirtioNet;
pub use pci::VirtioPci;
pub use rnd::VirtioRnd;

/// Red Hat's PCI vendor ID, which every virtio function uses.
pub const VIRTIO_VENDOR: u16 = 0x1af4;

/// Device types (virtio 1.x §5), also the subsystem ID of a transitional
/// PCI function.
pub mod types {
    pub const NET: u16 = 1;
    pub const BLOCK: u16 = 2;
    pub const CONSOLE: u16 = 3;
    pub const RNG: u16 = 4;
    pub const SCSI: u16 = 8;
    pub const P9: u16 = 9;
    pub const INPUT: u16 = 18;
}

/// Device status bits.
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const NEEDS_RESET: u8 = 0x40;
    pub const FAILED: u8 = 0x80;
}

/// Feature bits the transport itself offers.
pub const F_RING_INDIRECT_DESC: u64 = 1 << 28;
pub const F_RING_EVENT_IDX: u64 = 1 << 29;
pub const F_VERSION_1: u64 = 1 << 32;

/// "No MSI-X vector" in the vector registers.
pub const NO_VECTOR: u16 = 0xffff;

/// How a device's workers tell the driver about used buffers and
/// configuration changes; the transport turns it into MSI-X, MSI or
/// INTx with the ISR register.
pub trait VirtioInterrupt: Send + Sync {
    fn signal_used(&self, queue: u16);
    fn signal_config(&self);
}

/// A virtio device behind a transport.
pub trait VirtioDevice: Send {
    /// One of [`types`].
    fn device_type(&self) -> u16;
    /// The PCI class, subclass and programming interface.
    fn pci_class(&self) -> (u8, u8, u8);
    /// Each queue's maximum size (a power of two).
    fn queue_sizes(&self) -> &[u16];
    /// Device-specific feature bits; the transport adds its own.
    fn features(&self) -> u64;
    /// Size of the device-specific configuration space.
    fn config_size(&self) -> usize {
        0
    }
    /// Reads the configuration space; `offset`/`data` are the guest's
    /// and may lie partly outside it (those bytes read as 0).
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let _ = offset;
        data.fill(0);
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        let _ = (offset, data);
    }
    /// The driver set DRIVER_OK: start serving. Workers must drain their
    /// queues once when they start (kicks may predate them). An error
    /// makes the transport report NEEDS_RESET.
    fn activate(&mut self, act: Activation) -> Result<(), String>;
    /// The transport has stopped the queues of the last activation: drop
    /// per-activation state and let workers exit. Must not wait for a
    /// worker (it may be waiting for the transport's lock to signal). May
    /// wait, bounded, for requests a backend holds whose completions take
    /// no lock the transport holds ([`InFlight`]).
    fn reset(&mut self);
}

/// What a device gets when the driver starts it.
pub struct Activation {
    pub mem: GuestMemoryMmap,
    pub queues: Arc<ActiveQueues>,
    /// The features the driver accepted.
    pub features: u64,
}

/// The queues of one activation, shared by the transport and the
/// device's workers.
pub struct ActiveQueues {
    queues: Vec<Mutex<Queue>>,
    kicks: Vec<Arc<EventFd>>,
    stopped: Arc<AtomicBool>,
    irq: Arc<dyn VirtioInterrupt>,
}

impl ActiveQueues {
    pub fn new(
        queues: Vec<Queue>,
        kicks: Vec<Arc<EventFd>>,
        irq: Arc<dyn VirtioInterrupt>,
    ) -> Self {
        Self::with_stop_flag(queues, kicks, irq, Arc::default())
    }

    /// [`new`](Self::new), with a stop flag shared with `irq` (which may
    /// then give up a signal once the queues are stopped).
    pub fn with_stop_flag(
        queues: Vec<Queue>,
        kicks: Vec<Arc<EventFd>>,
        irq: Arc<dyn VirtioInterrupt>,
        stopped: Arc<AtomicBool>,
    ) -> Self {
        ActiveQueues {
            queues: queues.into_iter().map(Mutex::new).collect(),
            kicks,
            stopped,
            irq,
        }
    }

    pub fn len(&self) -> usize {
        self.queues.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// The doorbell of queue `q` (written by the driver's notify).
    pub fn kick(&self, q: usize) -> Option<&EventFd> {
        self.kicks.get(q).map(|k| k.as_ref())
    }

    /// Queue `q`, exclusively, unless the device was reset (then never
    /// again). Hold it only while touching the ring, never while
    /// signalling an interrupt or waiting for I/O.
    pub fn lock(&self, q: usize) -> Option<MutexGuard<'_, Queue>> {
        let g = self
            .queues
            .get(q)?
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if self.stopped.load(Ordering::Acquire) || !g.ready() {
            return None;
        }
        Some(g)
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    pub fn signal_used(&self, q: u16) {
        if !self.is_stopped() {
            self.irq.signal_used(q);
        }
    }

    pub fn signal_config(&self) {
        if !self.is_stopped() {
            self.irq.signal_config();
        }
    }

    /// Stops the queues: waits until no worker holds one, after which
    /// [`lock`](Self::lock) fails forever.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        for q in &self.queues {
            drop(q.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }
}

/// Chains a worker serves per queue-lock hold: a reset waits for the
/// queue locks, so a guest that keeps posting must not keep one held.
pub const DRAIN_BUDGET: usize = 64;

/// What one [`drain_queue`] call left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// The driver wants an interrupt for what was used.
    pub notify: bool,
    /// The budget ran out with chains still available: notifications are
    /// still off, so no kick will come; drain again without waiting.
    pub more: bool,
}

/// Serves up to [`DRAIN_BUDGET`] available chains of `q` with `serve`
/// (which returns the bytes it wrote to the chain), re-checking after
/// turning notifications back on (EVENT_IDX), and says whether the
/// driver wants an interrupt and whether chains are left.
///
/// A ring whose available index lies (virtio-queue refuses it) yields
/// nothing; the loop then stops instead of spinning on it.
pub fn drain_queue(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    mut serve: impl FnMut(DescriptorChain<&GuestMemoryMmap>) -> u32,
) -> Drained {
    if ring_lies(q, mem) {
        return Drained {
            notify: false,
            more: false,
        };
    }
    let mut used = false;
    let mut served = 0;
    let mut idle_rounds = 0;
    let more = loop {
        let _ = q.disable_notification(mem);
        let mut progressed = false;
        while served < DRAIN_BUDGET {
            let Some(chain) = pop_chain(q, mem) else {
                break;
            };
            served += 1;
            let head = chain.head_index();
            let len = serve(chain);
            if q.add_used(mem, head, len).is_err() {
                break;
            }
            used = true;
            progressed = true;
        }
        if served >= DRAIN_BUDGET && has_available(q, mem) {
            break true;
        }
        // A buffer added while notifications were off is seen on the
        // next round; two rounds without progress mean a broken ring.
        idle_rounds = if progressed { 0 } else { idle_rounds + 1 };
        match q.enable_notification(mem) {
            Ok(true) if idle_rounds < 2 => continue,
            _ => break false,
        }
    };
    Drained {
        notify: used && q.needs_notification(mem).unwrap_or(true),
        more,
    }
}

/// Drains queue `qi` of `aq` batch by batch ([`drain_queue`]), releasing
/// the queue and signalling between batches; false once the device was
/// reset.
pub fn serve_queue(
    aq: &ActiveQueues,
    qi: usize,
    mem: &GuestMemoryMmap,
    mut serve: impl FnMut(DescriptorChain<&GuestMemoryMmap>) -> u32,
) -> bool {
    loop {
        let d = {
            let Some(mut q) = aq.lock(qi) else {
                return false;
            };
            drain_queue(&mut q, mem, &mut serve)
        };
        if d.notify {
            aq.signal_used(qi as u16);
        }
        if !d.more {
            return true;
        }
    }
}

/// Pops chains for asynchronous devices (storage): each one counts in
/// `inflight` until its completion takes it off, and popping stops at
/// `limit` (a completion then wakes the worker) so a guest re-posting
/// heads cannot queue unbounded work. Same EVENT_IDX re-check as
/// [`drain_queue`]; `take` turns each chain into the device's request.
pub fn pop_bounded<T>(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    inflight: &InFlight,
    limit: usize,
    mut take: impl FnMut(DescriptorChain<&GuestMemoryMmap>) -> T,
) -> Vec<T> {
    let mut batch = Vec::new();
    let mut idle_rounds = 0;
    loop {
        let _ = q.disable_notification(mem);
        let mut progressed = false;
        while inflight.get() < limit {
            let Some(chain) = pop_chain(q, mem) else {
                break;
            };
            inflight.add();
            batch.push(take(chain));
            progressed = true;
        }
        if inflight.get() >= limit {
            break;
        }
        idle_rounds = if progressed { 0 } else { idle_rounds + 1 };
        match q.enable_notification(mem) {
            Ok(true) if idle_rounds < 2 => continue,
            _ => break,
        }
    }
    batch
}

/// The next available chain, or None; never pops from a ring whose avail
/// index lies ([`ring_lies`]).
pub fn pop_chain<'a>(
    q: &mut Queue,
    mem: &'a GuestMemoryMmap,
) -> Option<DescriptorChain<&'a GuestMemoryMmap>> {
    if ring_lies(q, mem) {
        return None;
    }
    q.pop_descriptor_chain(mem)
}

/// Whether a chain can be popped (a lying index counts as none).
pub(crate) fn has_available(q: &Queue, mem: &GuestMemoryMmap) -> bool {
    !ring_lies(q, mem)
        && q.avail_idx(mem, std::sync::atomic::Ordering::Acquire)
            .is_ok_and(|a| a.0 != q.next_avail())
}

/// Whether the driver's avail index runs more than a ring ahead of what
/// was consumed: nothing can be popped (virtio-queue refuses, logging an
/// error per attempt) until the driver resets the device, so callers
/// check first instead of popping on every kick.
pub fn ring_lies(q: &Queue, mem: &GuestMemoryMmap) -> bool {
    q.avail_idx(mem, std::sync::atomic::Ordering::Acquire)
        .map_or(true, |a| {
            (a - std::num::Wrapping(q.next_avail())).0 > q.size()
        })
}

/// Waits until one of `fds` is readable; returns the readable ones'
/// indexes (empty on EINTR). Workers use it on their kicks and a stop
/// event.
pub fn wait_readable(fds: &[&EventFd]) -> Vec<usize> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|f| libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a valid array of `p.len()` pollfds for the call.
    let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, -1) };
    if n <= 0 {
        return Vec::new();
    }
    p.iter()
        .enumerate()
        .filter(|(_, p)| p.revents != 0)
        .map(|(i, _)| i)
        .collect()
}
