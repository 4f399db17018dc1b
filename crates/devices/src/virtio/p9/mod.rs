//! virtio-9p (bhyve's `pci_virtio_9p.c`): a host directory shared with
//! the guest over 9P2000.L, the protocol Linux's v9fs speaks
//! (`mount -t 9p -o trans=virtio,version=9p2000.L TAG /mnt`).
//!
//! One request queue: each chain holds a T-message in its readable
//! descriptors and room for the R-message in its writable ones. A worker
//! thread takes chains off the ring, releases the queue, answers them
//! through the [`server`], and puts them back as used.
//!
//! The share cannot be escaped: see [`share`] for how names are resolved.
//! The server is ours rather than a crate's: confinement is the point of
//! this device, and the 9P servers on crates.io rely on a jail (chroot,
//! minijail) around the process for it, which bhyve does not have here.

pub mod fd_budget;
mod ops;
pub mod server;
pub mod share;
pub mod wire;

use std::path::Path;
use std::sync::Arc;

use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::chain_io::segments;
use super::{types, wait_readable, Activation, ActiveQueues, VirtioDevice};
use crate::virtio::worker::Workers;
use fd_budget::FdBudget;
use server::Server;
use share::Share;

/// bhyve's ring size and longest mount tag.
const QUEUE_SIZE: u16 = 256;
pub const MAX_TAG: usize = 256;
/// VIRTIO_9P_F_MOUNT_TAG: the configuration space holds the tag.
const F_MOUNT_TAG: u64 = 1 << 0;
/// PCI class "mass storage", as bhyve sets it.
const CLASS_STORAGE: (u8, u8, u8) = (0x01, 0x00, 0x00);
/// Chains taken off the ring per queue lock.
const BATCH: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum P9Error {
    #[error("share name too long")]
    TagTooLong,
    /// `reason` is strerror's text, as bhyve prints it.
    #[error("failed to open '{path}': {reason}")]
    Open { path: String, reason: String },
}

pub struct VirtioP9 {
    config: Vec<u8>,
    share: Arc<Share>,
    workers: Workers,
}

impl VirtioP9 {
    /// Shares directory `path` under mount tag `tag` (read-only with
    /// `ro`).
    pub fn new(tag: &str, path: &Path, ro: bool) -> Result<Self, P9Error> {
        if tag.len() > MAX_TAG {
            return Err(P9Error::TagTooLong);
        }
        let share = Share::open(path, ro).map_err(|e| P9Error::Open {
            path: path.display().to_string(),
            reason: e
                .to_string()
                .split(" (os error")
                .next()
                .unwrap_or_default()
                .to_owned(),
        })?;
        // Raises the soft descriptor limit, once (see fd_budget).
        FdBudget::global();
        let mut config = (tag.len() as u16).to_le_bytes().to_vec();
        config.extend_from_slice(tag.as_bytes());
        Ok(VirtioP9 {
            config,
            share: Arc::new(share),
            workers: Workers::new(),
        })
    }
}

/// One request taken off the ring: its head and its buffers.
struct Pending {
    head: u16,
    readable: Vec<(GuestAddress, u32)>,
    writable: Vec<(GuestAddress, u32)>,
}

/// Answers one request (the reply, empty when there is none to give).
fn respond(p: &Pending, mem: &GuestMemoryMmap, server: &mut Server, buf: &mut Vec<u8>) -> Vec<u8> {
    // Never read more than the largest message allowed: a guest can
    // claim 4 GiB descriptors.
    let max = server.msize() as usize;
    buf.clear();
    for &(addr, len) in &p.readable {
        let want = (len as usize).min(max - buf.len());
        if want == 0 {
            break;
        }
        let at = buf.len();
        buf.resize(at + want, 0);
        if mem.read_slice(&mut buf[at..], addr).is_err() {
            return Vec::new();
        }
    }
    let Some(resp) = server.handle(buf) else {
        return Vec::new();
    };
    let room: u64 = p.writable.iter().map(|&(_, l)| u64::from(l)).sum();
    if resp.len() as u64 > room && buf.len() >= wire::HEADER {
        // The driver left too little room: say so in what fits.
        return wire::rlerror(u16::from_le_bytes([buf[5], buf[6]]), libc::ENOBUFS);
    }
    resp
}

/// Writes `resp` into the request's buffers; returns the bytes written.
fn write_reply(p: &Pending, mem: &GuestMemoryMmap, resp: &[u8]) -> u32 {
    let mut done = 0usize;
    for &(addr, len) in &p.writable {
        let n = (len as usize).min(resp.len() - done);
        if n == 0 || mem.write_slice(&resp[done..done + n], addr).is_err() {
            break;
        }
        done += n;
    }
    done as u32
}

/// Serves the queue until it is empty; false once the device was reset.
fn serve(aq: &ActiveQueues, mem: &GuestMemoryMmap, server: &mut Server, buf: &mut Vec<u8>) -> bool {
    loop {
        let Some(batch) = take_batch(aq, mem) else {
            return false;
        };
        if batch.is_empty() {
            return true;
        }
        if !answer(aq, mem, server, buf, &batch) {
            return false;
        }
    }
}

/// Takes up to [`BATCH`] chains off the ring; empty when there are none
/// (notifications re-armed), None once the device was reset.
fn take_batch(aq: &ActiveQueues, mem: &GuestMemoryMmap) -> Option<Vec<Pending>> {
    let mut q = aq.lock(0)?;
    let mut idle = 0;
    loop {
        let _ = q.disable_notification(mem);
        let mut b = Vec::new();
        while b.len() < BATCH {
            let Some(chain) = crate::virtio::pop_chain(&mut q, mem) else {
                break;
            };
            // Empty descriptors dropped, at most MAX_SEGMENTS each way.
            b.push(Pending {
                head: chain.head_index(),
                readable: segments(chain.clone(), false),
                writable: segments(chain, true),
            });
        }
        if !b.is_empty() {
            return Some(b);
        }
        // A buffer added while notifications were off shows up on the
        // next round; two empty rounds: a broken ring.
        match q.enable_notification(mem) {
            Ok(true) if idle < 2 => idle += 1,
            _ => return Some(b),
        }
    }
}

/// Answers `batch` and returns its chains to the driver; false once the
/// device was reset.
fn answer(
    aq: &ActiveQueues,
    mem: &GuestMemoryMmap,
    server: &mut Server,
    buf: &mut Vec<u8>,
    batch: &[Pending],
) -> bool {
    let mut used = false;
    for p in batch {
        // A reset ends the session: the rest of the batch is not
        // carried out for a driver that is gone.
        if aq.is_stopped() {
            return false;
        }
        // The file system work happens without the queue lock.
        let resp = respond(p, mem, server, buf);
        let Some(mut q) = aq.lock(0) else {
            return false;
        };
        // The reply is written under the queue lock, which a reset
        // waits for: none lands in guest memory after the reset.
        let n = write_reply(p, mem, &resp);
        if q.add_used(mem, p.head, n).is_err() {
            break;
        }
        used = true;
    }
    let notify = used && {
        let Some(mut q) = aq.lock(0) else {
            return false;
        };
        q.needs_notification(mem).unwrap_or(true)
    };
    if notify {
        aq.signal_used(0);
    }
    true
}

fn worker(act: Activation, stop: Arc<EventFd>, share: Arc<Share>) {
    let aq = act.queues;
    let mut server = Server::new(share);
    let mut buf = Vec::new();
    let Some(kick) = aq.kick(0) else { return };
    loop {
        if !serve(&aq, &act.mem, &mut server, &mut buf) {
            return;
        }
        let ready = wait_readable(&[kick, &stop]);
        if ready.contains(&1) || aq.is_stopped() {
            return;
        }
        let _ = kick.read();
    }
}

impl VirtioDevice for VirtioP9 {
    fn device_type(&self) -> u16 {
        types::P9
    }

    fn pci_class(&self) -> (u8, u8, u8) {
        CLASS_STORAGE
    }

    fn queue_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        F_MOUNT_TAG
    }

    fn config_size(&self) -> usize {
        self.config.len()
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| self.config.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    fn activate(&mut self, act: Activation) -> Result<(), String> {
        let stop = self.workers.begin()?;
        let (s, share) = (stop.clone(), self.share.clone());
        self.workers
            .spawn("virtio-9p", move || worker(act, s, share))?;
        Ok(())
    }

    fn reset(&mut self) {
        // The worker's session (its fids) goes with it.
        self.workers.stop();
    }
}

#[cfg(test)]
mod escape_tests;
#[cfg(test)]
mod tests;
