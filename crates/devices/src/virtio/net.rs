//! virtio-net (bhyve's `pci_virtio_net.c`): a receive and a transmit
//! queue over a host [`NetBackend`] (the tap of `bhyve-backends`).
//!
//! Each queue has its own worker thread: the receive worker waits on
//! the backend's readability while the guest has buffers, and only on
//! the receive queue's kick once it has none (a frame read from the
//! backend is then held, not dropped, until the guest posts buffers);
//! the transmit worker waits on the transmit kick, and on the backend's
//! writability when the host side pushes back.
//!
//! Frames are copied through one host buffer per worker: the guest's
//! descriptors are never handed to the kernel, so a hostile descriptor
//! can only make a frame be dropped.

mod rx;
pub mod sock;
#[cfg(test)]
mod tests;
mod tx;

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::{types, Activation, ActiveQueues, VirtioDevice, F_VERSION_1};
use crate::virtio::worker::Workers;

/// Feature bits (virtio 1.x §5.1.3).
pub mod features {
    /// The device takes frames with a partial checksum (guest → host).
    pub const CSUM: u64 = 1 << 0;
    /// The driver takes frames with a partial checksum (host → guest).
    pub const GUEST_CSUM: u64 = 1 << 1;
    pub const MTU: u64 = 1 << 3;
    pub const MAC: u64 = 1 << 5;
    pub const GUEST_TSO4: u64 = 1 << 7;
    pub const GUEST_TSO6: u64 = 1 << 8;
    pub const GUEST_ECN: u64 = 1 << 9;
    pub const GUEST_UFO: u64 = 1 << 10;
    pub const HOST_TSO4: u64 = 1 << 11;
    pub const HOST_TSO6: u64 = 1 << 12;
    pub const HOST_ECN: u64 = 1 << 13;
    pub const HOST_UFO: u64 = 1 << 14;
    pub const MRG_RXBUF: u64 = 1 << 15;
    pub const STATUS: u64 = 1 << 16;
}

/// The virtio-net header as backends exchange it: `virtio_net_hdr_v1`
/// (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset,
/// num_buffers).
pub const VNET_HDR_LEN: usize = 12;
/// The legacy header without `num_buffers`, used by a driver that took
/// neither VERSION_1 nor MRG_RXBUF.
const LEGACY_HDR_LEN: usize = 10;
/// Largest frame (without header) either way: bhyve's
/// `VTNET_MAX_PKT_LEN`, a 64 KiB GSO frame plus its headers.
pub const MAX_FRAME: usize = 65536 + 64;
/// Ethernet header plus one VLAN tag: what a frame may add to the MTU.
const L2_OVERHEAD: usize = 14 + 4;

/// `gso_type` values and the header flag we look at.
mod hdr {
    pub const F_NEEDS_CSUM: u8 = 1;
    pub const GSO_NONE: u8 = 0;
    pub const GSO_TCPV4: u8 = 1;
    pub const GSO_UDP: u8 = 3;
    pub const GSO_TCPV6: u8 = 4;
    pub const GSO_ECN: u8 = 0x80;
}

/// Queue size. bhyve uses 1024; legacy drivers cannot shrink a queue
/// and iPXE's refuses anything above 256, QEMU's default.
const QUEUE_SIZE: u16 = 256;
const RXQ: usize = 0;
const TXQ: usize = 1;

/// PCI class "network controller, Ethernet".
const CLASS_ETHERNET: (u8, u8, u8) = (0x02, 0x00, 0x00);

/// How long a receive worker leaves a backend alone after it failed
/// (not merely had nothing): its descriptor may poll ready forever, as a
/// tap whose interface the host deleted does (e1000 waits as long).
const FAILED_BACKEND_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Link status bit of the configuration's `status`.
const STATUS_LINK_UP: u16 = 1;
/// mac[6], status, max_virtqueue_pairs, mtu.
const CONFIG_SIZE: usize = 12;

/// bhyve's MTU bounds (`VTNET_MIN_MTU` is ETHERMIN).
pub const MIN_MTU: u64 = 46;
pub const MAX_MTU: u64 = 65535;

/// The host side of a virtio-net device. Frames are whole Ethernet
/// frames; with [`has_vnet_hdr`](Self::has_vnet_hdr) each one is
/// preceded by a [`VNET_HDR_LEN`]-byte virtio-net header both ways.
pub trait NetBackend: Send + Sync {
    fn has_vnet_hdr(&self) -> bool;
    /// Offload feature bits ([`features`]) the backend can honour.
    fn offload_features(&self) -> u64;
    /// Tells the backend which offloads the driver accepted, so it only
    /// hands over frames the driver can take.
    fn set_offloads(&self, features: u64) -> io::Result<()>;
    /// Reads one frame into `buf` (truncated to it); `WouldBlock` when
    /// none is waiting. Never blocks.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Sends one frame; `WouldBlock` when the host side pushes back.
    /// Never blocks.
    fn send(&self, frame: &[u8]) -> io::Result<usize>;
    /// A descriptor that polls readable when a frame waits and writable
    /// when [`send`](Self::send) may succeed.
    fn poll_fd(&self) -> RawFd;
}

/// bhyve's default MAC (`net_genmac`): its OUI 58:9c:fc, then the first
/// three bytes of the MD5 of `"<slot>-<func>-<vmname>"` (formatted into
/// an 80-byte buffer, so at most 79 bytes are hashed).
pub fn default_mac(slot: u8, func: u8, vmname: &str) -> [u8; 6] {
    let text = format!("{slot}-{func}-{vmname}");
    let bytes = &text.as_bytes()[..text.len().min(79)];
    let d = md5::compute(bytes).0;
    [0x58, 0x9c, 0xfc, d[0], d[1], d[2]]
}

/// Parses a MAC as ether_aton(3) does (six `:`-separated hex octets);
/// refuses multicast and all-zero addresses as bhyve's `net_parsemac`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    if parts.next().is_some() || mac[0] & 1 != 0 || mac == [0; 6] {
        return None;
    }
    Some(mac)
}

/// Parses `mtu=` as bhyve's `net_parsemtu` (strtoul with base 0, no
/// sign) and checks bhyve's bounds.
pub fn parse_mtu(s: &str) -> Option<u16> {
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()?
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()?
    } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()?
    } else {
        return None;
    };
    (MIN_MTU..=MAX_MTU).contains(&v).then_some(v as u16)
}

pub struct VirtioNet {
    mac: [u8; 6],
    /// `mtu=`: offered as VIRTIO_NET_F_MTU and enforced on transmit.
    mtu: Option<u16>,
    backend: Option<Arc<dyn NetBackend>>,
    workers: Workers,
    /// Frames from the backend the guest had no usable buffers for.
    rx_dropped: Arc<AtomicU64>,
}

/// What both workers of one activation share.
struct NetCtx {
    mem: GuestMemoryMmap,
    queues: Arc<ActiveQueues>,
    backend: Arc<dyn NetBackend>,
    features: u64,
    /// The header length the driver uses (10 or 12).
    guest_hdr: usize,
    mtu: Option<u16>,
    stop: Arc<EventFd>,
    rx_dropped: Arc<AtomicU64>,
}

impl VirtioNet {
    /// A device with `mac`, the optional `mtu=`, and its backend (bhyve
    /// permits a device without one: it then sends nowhere and receives
    /// nothing).
    pub fn new(mac: [u8; 6], mtu: Option<u16>, backend: Option<Arc<dyn NetBackend>>) -> Self {
        VirtioNet {
            mac,
            mtu,
            backend,
            workers: Workers::new(),
            rx_dropped: Arc::default(),
        }
    }

    /// Received frames dropped so far because the guest's buffers could
    /// not take them (too small, too many descriptors, outside memory).
    pub fn rx_dropped(&self) -> u64 {
        self.rx_dropped.load(Ordering::Relaxed)
    }

    fn config_bytes(&self) -> [u8; CONFIG_SIZE] {
        let mut c = [0u8; CONFIG_SIZE];
        c[..6].copy_from_slice(&self.mac);
        c[6..8].copy_from_slice(&STATUS_LINK_UP.to_le_bytes());
        c[8..10].copy_from_slice(&1u16.to_le_bytes());
        // bhyve reports its default of 1500 when `mtu=` is absent.
        c[10..12].copy_from_slice(&self.mtu.unwrap_or(1500).to_le_bytes());
        c
    }

    fn spawn(&mut self, name: &str, ctx: Arc<NetCtx>, body: fn(Arc<NetCtx>)) -> Result<(), String> {
        self.workers.spawn(name, move || body(ctx))
    }
}

impl VirtioDevice for VirtioNet {
    fn device_type(&self) -> u16 {
        types::NET
    }

    fn pci_class(&self) -> (u8, u8, u8) {
        CLASS_ETHERNET
    }

    fn queue_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        let mut f = features::MAC | features::STATUS | features::MRG_RXBUF;
        if self.mtu.is_some() {
            f |= features::MTU;
        }
        if let Some(b) = &self.backend {
            if b.has_vnet_hdr() {
                f |= b.offload_features();
            }
        }
        f
    }

    fn config_size(&self) -> usize {
        CONFIG_SIZE
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let c = self.config_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i as u64)
                .and_then(|o| c.get(usize::try_from(o).ok()?))
                .copied()
                .unwrap_or(0);
        }
    }

    /// Legacy drivers may set the MAC through the configuration (bhyve
    /// allows it); everything else is read-only.
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            match offset.checked_add(i as u64) {
                Some(o) if o < 6 => self.mac[o as usize] = *b,
                _ => log::debug!("virtio-net: write to read-only config byte"),
            }
        }
    }

    fn activate(&mut self, act: Activation) -> Result<(), String> {
        let stop = self.workers.begin()?;
        let Some(backend) = self.backend.clone() else {
            // No backend: nothing arrives, and what the guest sends is
            // completed and dropped.
            let ctx = Arc::new(NetCtx {
                mem: act.mem,
                queues: act.queues,
                backend: Arc::new(tx::NullBackend),
                features: act.features,
                guest_hdr: guest_hdr_len(act.features),
                mtu: self.mtu,
                stop,
                rx_dropped: self.rx_dropped.clone(),
            });
            return self.spawn("virtio-net-tx", ctx, tx::worker);
        };
        if let Err(e) = backend.set_offloads(act.features) {
            // The backend then sends plain frames, which any driver takes.
            log::warn!("virtio-net: cannot set the backend's offloads: {e}");
        }
        let ctx = Arc::new(NetCtx {
            mem: act.mem,
            queues: act.queues,
            backend,
            features: act.features,
            guest_hdr: guest_hdr_len(act.features),
            mtu: self.mtu,
            stop,
            rx_dropped: self.rx_dropped.clone(),
        });
        self.spawn("virtio-net-rx", ctx.clone(), rx::worker)?;
        self.spawn("virtio-net-tx", ctx, tx::worker)
    }

    fn reset(&mut self) {
        self.workers.stop();
    }
}

/// virtio 1.x and mergeable buffers both use the 12-byte header.
fn guest_hdr_len(features: u64) -> usize {
    if features & (F_VERSION_1 | features::MRG_RXBUF) != 0 {
        VNET_HDR_LEN
    } else {
        LEGACY_HDR_LEN
    }
}

/// poll(2) over `(fd, events)` pairs; returns each one's revents (all
/// zero on timeout or EINTR). `timeout_ms` < 0 waits forever.
fn poll_fds(fds: &[(RawFd, i16)], timeout_ms: i32) -> Vec<i16> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a valid array of `p.len()` pollfds for the call.
    let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    if n <= 0 {
        return vec![0; fds.len()];
    }
    p.iter().map(|p| p.revents).collect()
}
