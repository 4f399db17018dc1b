//! Transmit descriptors to frames, as bhyve's `e82545_transmit`: legacy
//! descriptors (checksum at CSO from CSS), context descriptors (IP and
//! TCP/UDP checksum offload: IPCSS/IPCSO/IPCSE, TUCSS/TUCSO/TUCSE) and
//! data descriptors, with TCP/UDP segmentation (TSO: the header is
//! replicated per MSS-sized segment with the IP length and ID, the TCP
//! sequence number and flags, or the UDP length, and both checksums
//! redone), and VLAN tag insertion.
//!
//! Everything in a descriptor is the guest's: a packet is gathered into
//! one host buffer (at most [`MAX_TXSEGS`] descriptors and
//! [`MAX_TX_BYTES`] bytes, spanning at most [`MAX_PACKET_DESCS`]
//! descriptors) before anything is computed, so offsets and
//! lengths are checked against that buffer only; a packet that breaks a
//! rule is dropped and its descriptors are still completed.
//!
//! Differences from bhyve, where bhyve is wrong or unsafe: mixing
//! descriptor types in one packet drops it (bhyve asserts), an MSS of 0
//! drops it (bhyve loops forever), a UDP segment's length is written as
//! the 16-bit big-endian field it is, and IFCS does not shorten the data.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// bhyve's `I82545_MAX_TXSEGS`.
pub const MAX_TXSEGS: usize = 64;
/// Descriptors one packet may span, empty ones included: a packet with
/// no EOP within them is dropped with them, and the next descriptor
/// starts a new packet. This bounds the walk a TDT write repeats over a
/// packet still waiting for its EOP (its descriptors are walked again
/// from TDH each time, as bhyve does, which has no bound).
///
/// The 8254x manual documents no descriptor limit (bhyve: "no hard limit
/// on the chip"), but a packet's buffers must fit in the transmit FIFO
/// (PBA's transmit share, 16 KB after reset) and empty descriptors may
/// only stand between packets: the chip cannot hold a longer packet, and
/// what it does with one is undefined. Twice [`MAX_TXSEGS`] lets the
/// largest packet accepted have an empty descriptor after each buffer.
pub const MAX_PACKET_DESCS: u32 = 2 * MAX_TXSEGS as u32;
/// Bytes one packet (a TSO super-frame included) may gather.
pub const MAX_TX_BYTES: usize = 256 << 10;
/// Largest frame sent: the 82545's 16 KiB jumbo limit plus a VLAN tag.
pub const MAX_FRAME: usize = 16384 + 4;
/// bhyve caps the TSO header (82576 datasheet 7.2.4.5).
const MAX_TSO_HDR: usize = 240;
pub const DESC_LEN: u64 = 16;

const CMD_EOP: u32 = 1 << 24;
const CMD_IC: u32 = 1 << 26;
pub const CMD_RS: u32 = 1 << 27;
const CMD_DEXT: u32 = 1 << 29;
const CMD_VLE: u32 = 1 << 30;
/// Data descriptor: TCP segmentation enable.
const CMD_TSE: u32 = 1 << 26;
/// Context descriptor: TCP (else UDP), IPv4 (else IPv6).
const CTX_TCP: u32 = 1 << 24;
const CTX_IP: u32 = 1 << 25;
const DTYP_MASK: u32 = CMD_DEXT | 0x00f0_0000;
const TYP_LEGACY: u32 = 0;
const TYP_CONTEXT: u32 = CMD_DEXT;
const TYP_DATA: u32 = CMD_DEXT | 0x0010_0000;
const POPTS_IXSM: u8 = 1;
const POPTS_TXSM: u8 = 2;
pub const STAT_DD: u8 = 1;
const TH_FIN: u8 = 0x01;
const TH_PUSH: u8 = 0x08;

/// A descriptor ring: guest address and number of 16-byte descriptors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ring {
    pub base: u64,
    pub len: u32,
}

impl Ring {
    pub fn desc_addr(&self, idx: u32) -> Option<GuestAddress> {
        self.base
            .checked_add(u64::from(idx) * DESC_LEN)
            .map(GuestAddress)
    }

    pub fn read(&self, mem: &GuestMemoryMmap, idx: u32) -> Option<[u8; 16]> {
        let mut d = [0u8; 16];
        mem.read_slice(&mut d, self.desc_addr(idx)?).ok()?;
        Some(d)
    }

    pub fn next(&self, idx: u32) -> u32 {
        if idx + 1 >= self.len {
            0
        } else {
            idx + 1
        }
    }

    /// Descriptors from `head` up to (not including) `tail`.
    pub fn distance(&self, head: u32, tail: u32) -> u32 {
        if self.len == 0 {
            return 0;
        }
        (self.len + tail % self.len - head % self.len) % self.len
    }
}

/// The last context descriptor (raw fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxContext {
    ipcss: u8,
    ipcso: u8,
    ipcse: u16,
    tucss: u8,
    tucso: u8,
    tucse: u16,
    cmd_len: u32,
    hdr_len: u8,
    mss: u16,
}

impl TxContext {
    fn from_desc(d: &[u8; 16]) -> Self {
        TxContext {
            ipcss: d[0],
            ipcso: d[1],
            ipcse: u16::from_le_bytes([d[2], d[3]]),
            tucss: d[4],
            tucso: d[5],
            tucse: u16::from_le_bytes([d[6], d[7]]),
            cmd_len: u32::from_le_bytes([d[8], d[9], d[10], d[11]]),
            hdr_len: d[13],
            mss: u16::from_le_bytes([d[14], d[15]]),
        }
    }
}

/// A checksum to insert: sum from `start` to `end` (inclusive; 0 means
/// to the end of the frame), stored at `off`.
#[derive(Debug, Clone, Copy, Default)]
struct Ck {
    valid: bool,
    start: usize,
    off: usize,
    end: usize,
}

/// What the device settings add to a packet.
#[derive(Debug, Clone, Copy, Default)]
pub struct TxParams {
    /// CTRL.VME: VLE descriptors get a tag inserted.
    pub vlan_enable: bool,
    /// VET: the tag protocol identifier.
    pub vet: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxOutcome {
    /// The descriptors up to the tail do not end a packet yet.
    Incomplete,
    /// Descriptors up to `next` were consumed (a context descriptor, or
    /// a packet sent or dropped); `tso`: it was segmented.
    Done { next: u32, tso: bool },
}

/// Reusable buffers of one transmit worker.
#[derive(Default)]
pub struct Transmitter {
    buf: Vec<u8>,
    seg: Vec<u8>,
}

fn drop_packet(why: &str) {
    log::debug!("e1000: transmit packet dropped: {why}");
}

impl Transmitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes the packet (or context descriptor) at `head` of `(head,
    /// tail)`, handing each frame to `out`. Both must be below `ring.len`.
    pub fn transmit(
        &mut self,
        mem: &GuestMemoryMmap,
        ring: Ring,
        (head, tail): (u32, u32),
        ctx: &mut TxContext,
        params: TxParams,
        out: &mut dyn FnMut(&[u8]),
    ) -> TxOutcome {
        self.buf.clear();
        let mut idx = head;
        let mut ntype = None;
        let mut nsegs = 0usize;
        let mut bad: Option<&str> = None;
        let mut first_css = 0usize;
        let mut walked = 0u32;
        let last = loop {
            if idx == tail {
                return TxOutcome::Incomplete;
            }
            let Some(d) = ring.read(mem, idx) else {
                // A ring outside guest memory: each descriptor is a
                // dropped packet of its own.
                drop_packet("descriptor outside guest memory");
                return TxOutcome::Done {
                    next: ring.next(idx),
                    tso: false,
                };
            };
            let lower = u32::from_le_bytes([d[8], d[9], d[10], d[11]]);
            let dtype = if lower & CMD_DEXT != 0 {
                lower & DTYP_MASK
            } else {
                TYP_LEGACY
            };
            match ntype {
                None if dtype == TYP_CONTEXT => {
                    *ctx = TxContext::from_desc(&d);
                    return TxOutcome::Done {
                        next: ring.next(idx),
                        tso: false,
                    };
                }
                None => {
                    ntype = Some(dtype);
                    first_css = usize::from(d[13]);
                    if dtype != TYP_LEGACY && dtype != TYP_DATA {
                        bad = Some("unknown descriptor type");
                    }
                }
                Some(t) if t != dtype => bad = Some("descriptor types mixed in one packet"),
                Some(_) => {}
            }
            let len = if dtype == TYP_LEGACY {
                (lower & 0xffff) as usize
            } else {
                (lower & 0xf_ffff) as usize
            };
            if len > 0 && bad.is_none() {
                nsegs += 1;
                let start = self.buf.len();
                if nsegs > MAX_TXSEGS {
                    bad = Some("too many descriptors");
                } else if start + len > MAX_TX_BYTES {
                    bad = Some("too large");
                } else {
                    let addr = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
                    self.buf.resize(start + len, 0);
                    if mem
                        .read_slice(&mut self.buf[start..], GuestAddress(addr))
                        .is_err()
                    {
                        bad = Some("buffer outside guest memory");
                    }
                }
            }
            if lower & CMD_EOP != 0 {
                break (d, lower, dtype);
            }
            walked += 1;
            if walked >= MAX_PACKET_DESCS {
                drop_packet("no end of packet within MAX_PACKET_DESCS descriptors");
                return TxOutcome::Done {
                    next: ring.next(idx),
                    tso: false,
                };
            }
            idx = ring.next(idx);
        };
        let next = ring.next(idx);
        if let Some(why) = bad {
            drop_packet(why);
            return TxOutcome::Done { next, tso: false };
        }
        let (d, lower, dtype) = last;
        // POPTS (byte 13, where first_css was read) counts in a packet's
        // first data descriptor, as in QEMU; illumos' e1000g sets it only
        // there. bhyve reads the last one's.
        let popts = first_css as u8;
        let special = u16::from_le_bytes([d[14], d[15]]);
        let mut ck = [Ck::default(); 2];
        let mut tso = false;
        if dtype == TYP_LEGACY {
            if lower & CMD_IC != 0 {
                ck[0] = Ck {
                    valid: true,
                    start: first_css,
                    off: usize::from(d[10]),
                    end: 0,
                };
            }
        } else {
            tso = lower & CMD_TSE != 0;
            ck[0].valid = popts & POPTS_IXSM != 0;
            if ck[0].valid || tso {
                ck[0].start = usize::from(ctx.ipcss);
                ck[0].off = usize::from(ctx.ipcso);
                ck[0].end = usize::from(ctx.ipcse);
            }
            ck[1].valid = popts & POPTS_TXSM != 0;
            if ck[1].valid || tso {
                ck[1].start = usize::from(ctx.tucss);
                ck[1].off = usize::from(ctx.tucso);
                ck[1].end = usize::from(ctx.tucse);
            }
        }
        let vlan = (params.vlan_enable && lower & CMD_VLE != 0).then_some((params.vet, special));
        if !tso {
            let mut frame = std::mem::take(&mut self.buf);
            for c in ck.iter().filter(|c| c.valid) {
                insert_checksum(&mut frame, c);
            }
            self.send(&frame, vlan, out);
            self.buf = frame;
            return TxOutcome::Done { next, tso: false };
        }
        self.segment(ctx, ck, vlan, out);
        TxOutcome::Done { next, tso: true }
    }

    /// Sends `frame` with the VLAN tag `vlan` inserted after the MACs.
    fn send(&mut self, frame: &[u8], vlan: Option<(u16, u16)>, out: &mut dyn FnMut(&[u8])) {
        let Some((tpid, tci)) = vlan else {
            if frame.len() > MAX_FRAME {
                return drop_packet("larger than a jumbo frame");
            }
            return out(frame);
        };
        if frame.len() < 12 || frame.len() + 4 > MAX_FRAME {
            return drop_packet("no room for a VLAN tag");
        }
        let mut tagged = Vec::with_capacity(frame.len() + 4);
        tagged.extend_from_slice(&frame[..12]);
        tagged.extend_from_slice(&tpid.to_be_bytes());
        tagged.extend_from_slice(&tci.to_be_bytes());
        tagged.extend_from_slice(&frame[12..]);
        out(&tagged);
    }

    /// TCP/UDP segmentation of the gathered super-frame.
    fn segment(
        &mut self,
        ctx: &TxContext,
        ck: [Ck; 2],
        vlan: Option<(u16, u16)>,
        out: &mut dyn FnMut(&[u8]),
    ) {
        let hdrlen = usize::from(ctx.hdr_len);
        let tcp = ctx.cmd_len & CTX_TCP != 0;
        let ipv4 = ctx.cmd_len & CTX_IP != 0;
        let mss = usize::from(ctx.mss);
        let (ip, l4) = (ck[0], ck[1]);
        let reason = if hdrlen > MAX_TSO_HDR {
            Some("TSO header longer than 240 bytes")
        } else if hdrlen < ip.start + 6 || hdrlen < ip.off + 2 {
            Some("TSO header too short for the IP fields")
        } else if tcp && (hdrlen < l4.start + 14 || (l4.valid && hdrlen < l4.off + 2)) {
            Some("TSO header too short for the TCP fields")
        } else if !tcp && (hdrlen < l4.start + 8 || (l4.valid && hdrlen < l4.off + 2)) {
            Some("TSO header too short for the UDP fields")
        } else if hdrlen > self.buf.len() {
            Some("TSO header longer than the packet")
        } else if mss == 0 {
            Some("TSO with an MSS of 0")
        } else if hdrlen + mss > MAX_FRAME {
            Some("TSO segments larger than a jumbo frame")
        } else {
            None
        };
        if let Some(why) = reason {
            return drop_packet(why);
        }
        let buf = std::mem::take(&mut self.buf);
        let mut seg = std::mem::take(&mut self.seg);
        let (hdr, data) = buf.split_at(hdrlen);
        let paylen = ((ctx.cmd_len & 0xf_ffff) as usize).min(data.len());
        let ipid = be16(hdr, ip.start + 4);
        let tcpseq = if tcp { be32(hdr, l4.start + 4) } else { 0 };
        let tcpcs = if l4.valid { be16(hdr, l4.off) } else { 0 };
        let mut done = 0usize;
        let mut n = 0u16;
        while done < paylen {
            let now = mss.min(paylen - done);
            let last = done + now == paylen;
            seg.clear();
            seg.extend_from_slice(hdr);
            if ipv4 {
                put_be16(&mut seg, ip.start + 2, (hdrlen - ip.start + now) as u16);
                put_be16(&mut seg, ip.start + 4, ipid.wrapping_add(n));
            } else {
                let plen = (hdrlen - ip.start + now).wrapping_sub(40);
                put_be16(&mut seg, ip.start + 4, plen as u16);
            }
            let l4len = hdrlen.saturating_sub(l4.start) + now;
            if tcp {
                put_be32(&mut seg, l4.start + 4, tcpseq.wrapping_add(done as u32));
                if !last {
                    seg[l4.start + 13] &= !(TH_FIN | TH_PUSH);
                }
            } else {
                put_be16(&mut seg, l4.start + 4, l4len as u16);
            }
            seg.extend_from_slice(&data[done..done + now]);
            if ip.valid {
                insert_checksum(&mut seg, &ip);
            }
            if l4.valid {
                // The driver left the pseudo-header sum without the
                // length; each segment adds its own.
                let sum = fold(u32::from(tcpcs) + (l4len as u32 & 0xffff));
                put_be16(&mut seg, l4.off, sum);
                insert_checksum(&mut seg, &l4);
            }
            self.send(&seg, vlan, out);
            done += now;
            n = n.wrapping_add(1);
        }
        self.buf = buf;
        self.seg = seg;
    }
}

fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn put_be16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

fn put_be32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

/// Folds a one's-complement sum to 16 bits.
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The Internet checksum's one's-complement sum of `b`.
pub fn ones_sum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [x] = chunks.remainder() {
        sum += u32::from(*x) << 8;
    }
    fold(sum)
}

/// Stores the complement of the sum over the checksum's range at its
/// offset; ranges outside the frame are ignored (nothing to protect).
fn insert_checksum(frame: &mut [u8], ck: &Ck) {
    let end = if ck.end == 0 {
        frame.len()
    } else {
        (ck.end + 1).min(frame.len())
    };
    if ck.start >= end || ck.off + 2 > frame.len() {
        return;
    }
    let sum = ones_sum(&frame[ck.start..end]);
    put_be16(frame, ck.off, !sum);
}

#[cfg(test)]
#[path = "tx_tests.rs"]
mod tests;
