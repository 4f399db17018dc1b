//! Receive: which frames the filters accept (RAL/RAH, MTA, UPE/MPE/BAM,
//! the VLAN filter) and how a frame lands in the guest's receive
//! descriptors (RCTL's buffer size, BSIZE/BSEX; FCS space unless SECRC).
//!
//! bhyve accepts every frame; this filters as the hardware does, which
//! is what the guest's driver programmed (and what QEMU does).

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::regs::*;
use super::tx::Ring;

pub const STAT_DD: u8 = 1 << 0;
pub const STAT_EOP: u8 = 1 << 1;
/// "Ignore checksum indication": bhyve reports no receive checksums.
pub const STAT_IXSM: u8 = 1 << 2;
pub const STAT_PIF: u8 = 1 << 7;
const ETHER_MIN: usize = 60;
const FCS: usize = 4;

/// Receive buffer size from RCTL (bhyve's `e82545_bufsz`; the reserved
/// encoding gets 256 bytes, as bhyve).
pub fn bufsz(rctl: u32) -> usize {
    match (rctl & RCTL_BSEX != 0, (rctl & RCTL_SZ_MASK) >> 16) {
        (false, 0) => 2048,
        (false, 1) => 1024,
        (false, 2) => 512,
        (false, _) => 256,
        (true, 1) => 16384,
        (true, 2) => 8192,
        (true, 3) => 4096,
        (true, _) => 256,
    }
}

/// Largest frame accepted: 16 KiB with long packets enabled, else a
/// tagged standard frame with FCS (bhyve's 1522).
pub fn max_packet(rctl: u32) -> usize {
    if rctl & RCTL_LPE != 0 {
        16384
    } else {
        1522
    }
}

/// Descriptors the largest frame needs: receiving waits for that many.
pub fn descs_per_packet(rctl: u32) -> u32 {
    max_packet(rctl).div_ceil(bufsz(rctl)) as u32
}

/// The filter registers, copied out of the device for one batch.
#[derive(Clone)]
pub struct RxFilter {
    pub rctl: u32,
    /// RAL/RAH pairs.
    pub ra: [u32; 32],
    pub mta: [u32; 128],
    pub vfta: [u32; 128],
    pub vet: u16,
}

impl RxFilter {
    fn mta_hit(&self, dst: &[u8]) -> bool {
        let mo = (self.rctl >> RCTL_MO_SHIFT) & 3;
        let (a4, a5) = (u32::from(dst[4]), u32::from(dst[5]));
        let hash = match mo {
            0 => (a4 >> 4) | (a5 << 4),
            1 => (a4 >> 3) | (a5 << 5),
            2 => (a4 >> 2) | (a5 << 6),
            _ => a4 | (a5 << 8),
        } & 0xfff;
        self.mta[(hash >> 5) as usize] & (1 << (hash & 31)) != 0
    }

    fn ra_hit(&self, dst: &[u8]) -> bool {
        self.ra.chunks_exact(2).any(|p| {
            p[1] & RAH_AV != 0 && {
                let mut a = [0u8; 6];
                a[..4].copy_from_slice(&p[0].to_le_bytes());
                a[4..].copy_from_slice(&p[1].to_le_bytes()[..2]);
                a == dst[..6]
            }
        })
    }

    pub fn accepts(&self, frame: &[u8]) -> bool {
        if frame.len() < 14 {
            return false;
        }
        if self.rctl & RCTL_VFE != 0 && u16::from_be_bytes([frame[12], frame[13]]) == self.vet {
            let tag = frame
                .get(14..16)
                .map_or(0, |t| u16::from_be_bytes([t[0], t[1]]) & 0xfff);
            if self.vfta[usize::from(tag >> 5)] & (1 << (tag & 31)) == 0 {
                return false;
            }
        }
        let dst = &frame[..6];
        if dst[0] & 1 == 0 {
            return self.rctl & RCTL_UPE != 0 || self.ra_hit(dst);
        }
        if dst == [0xff; 6] && self.rctl & RCTL_BAM != 0 {
            return true;
        }
        self.rctl & RCTL_MPE != 0 || self.mta_hit(dst) || self.ra_hit(dst)
    }
}

/// Writes `frame` into the descriptors from `head` on (the caller made
/// sure enough are free); returns the next head and the length the
/// guest sees (padded to the Ethernet minimum, plus the FCS).
pub fn deliver(
    mem: &GuestMemoryMmap,
    ring: Ring,
    head: u32,
    rctl: u32,
    frame: &[u8],
) -> (u32, usize) {
    let bsz = bufsz(rctl);
    let mut len = frame.len().max(ETHER_MIN);
    if rctl & RCTL_SECRC == 0 {
        len += FCS;
    }
    let n = len.div_ceil(bsz);
    let mut idx = head;
    let mut chunk = vec![0u8; bsz.min(len)];
    for i in 0..n {
        let start = i * bsz;
        let now = bsz.min(len - start);
        let last = i + 1 == n;
        let data = frame
            .get(start..frame.len().min(start + now))
            .unwrap_or(&[]);
        chunk[..data.len()].copy_from_slice(data);
        chunk[data.len()..now].fill(0);
        if let Some(d) = ring.read(mem, idx) {
            let addr = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
            // A buffer outside guest memory loses the data, not the frame's
            // place in the ring.
            let _ = mem.write_slice(&chunk[..now], GuestAddress(addr));
            let status = if last {
                STAT_DD | STAT_EOP | STAT_IXSM | STAT_PIF
            } else {
                STAT_DD
            };
            let mut wb = [0u8; 8];
            wb[..2].copy_from_slice(&(now as u16).to_le_bytes());
            wb[4] = status;
            if let Some(a) = ring.desc_addr(idx).and_then(|a| a.0.checked_add(8)) {
                let _ = mem.write_slice(&wb, GuestAddress(a));
            }
        }
        idx = ring.next(idx);
    }
    (idx, len)
}
