//! Command tables and their Physical Region Descriptor Tables, as the
//! guest lays them out (AHCI 1.3.1 §4.2.3), read defensively.
//!
//! Everything here is guest-controlled: the command header's PRDT length,
//! each entry's address and byte count. Entries are read from guest
//! memory one chunk at a time so that a 65535-entry table never turns
//! into a host allocation of the same size, and a transfer walks its
//! table once from start to end however many chunks it takes.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Bytes of a command header in the command list.
pub const HEADER_SIZE: u64 = 32;
/// Where the PRDT starts in a command table (after CFIS and ACMD).
pub const PRDT_OFFSET: u64 = 0x80;
const ENTRY_SIZE: u64 = 16;
/// Data Byte Count: bits 21:0 hold the count minus one (4 MiB at most).
const DBC_MASK: u32 = 0x3f_ffff;
/// Segments handed to the backend per request (bhyve's BLOCKIF_IOV_MAX
/// is 128; larger chunks mean fewer round trips for big transfers).
pub const MAX_SEGS: usize = 256;

/// A command header (AHCI §4.2.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CmdHeader {
    pub flags: u16,
    pub prdtl: u16,
    /// Command table base (128-byte aligned; low bits are reserved).
    pub ctba: u64,
}

impl CmdHeader {
    /// ATAPI bit: the command table carries a SCSI packet.
    pub fn atapi(&self) -> bool {
        self.flags & (1 << 5) != 0
    }

    pub fn read(mem: &GuestMemoryMmap, clb: u64, slot: u8) -> Option<CmdHeader> {
        let mut b = [0u8; 16];
        let at = clb.checked_add(u64::from(slot) * HEADER_SIZE)?;
        mem.read_slice(&mut b, GuestAddress(at)).ok()?;
        let lo = u32::from_le_bytes(b[8..12].try_into().ok()?);
        let hi = u32::from_le_bytes(b[12..16].try_into().ok()?);
        Some(CmdHeader {
            flags: u16::from_le_bytes([b[0], b[1]]),
            prdtl: u16::from_le_bytes([b[2], b[3]]),
            ctba: ((u64::from(hi) << 32) | u64::from(lo)) & !0x7f,
        })
    }
}

/// Stores the PRD Byte Count of slot `slot` (bytes transferred).
pub fn set_prdbc(mem: &GuestMemoryMmap, clb: u64, slot: u8, bytes: u32) {
    if let Some(at) = clb.checked_add(u64::from(slot) * HEADER_SIZE + 4) {
        let _ = mem.write_obj(bytes, GuestAddress(at));
    }
}

/// A position in a PRDT: the next entry and the bytes of it already used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrdtCursor {
    base: u64,
    count: u16,
    index: u16,
    skip: u64,
}

impl PrdtCursor {
    pub fn new(hdr: &CmdHeader) -> Self {
        PrdtCursor {
            base: hdr.ctba.saturating_add(PRDT_OFFSET),
            count: hdr.prdtl,
            index: 0,
            skip: 0,
        }
    }

    fn entry(mem: &GuestMemoryMmap, base: u64, i: u16) -> Option<(u64, u64)> {
        let at = base.checked_add(u64::from(i) * ENTRY_SIZE)?;
        let mut e = [0u8; 16];
        mem.read_slice(&mut e, GuestAddress(at)).ok()?;
        let dba = u64::from_le_bytes(e[0..8].try_into().ok()?);
        let dbc = u32::from_le_bytes(e[12..16].try_into().ok()?);
        // Bit 0 of the address is reserved (word alignment); the count's
        // upper bits hold the interrupt flag and reserved bits.
        Some((dba & !1, u64::from(dbc & DBC_MASK) + 1))
    }

    /// The next segments covering at most `max` bytes and [`MAX_SEGS`]
    /// entries. When the table goes on beyond them, the chunk is cut
    /// down to a multiple of `unit` (the sector size) so that the next
    /// one starts on a sector. `None`: the table is unreadable.
    pub fn next_chunk(
        &mut self,
        mem: &GuestMemoryMmap,
        max: u64,
        unit: u64,
    ) -> Option<Vec<(GuestAddress, u64)>> {
        self.next_chunk_with(max, unit, &mut |base, i| Self::entry(mem, base, i))
    }

    /// [`PrdtCursor::next_chunk`] with entry `i` of the table at `base`
    /// from `entry`.
    fn next_chunk_with(
        &mut self,
        max: u64,
        unit: u64,
        entry: &mut dyn FnMut(u64, u16) -> Option<(u64, u64)>,
    ) -> Option<Vec<(GuestAddress, u64)>> {
        let mut segs: Vec<(GuestAddress, u64)> = Vec::new();
        // Where each segment starts (entry, bytes of it skipped): a cut
        // goes back using what was read, never reading the table again
        // (the guest may be rewriting it).
        let mut from: Vec<(u16, u64)> = Vec::new();
        let mut total = 0u64;
        let start = *self;
        while self.index < self.count && total < max && segs.len() < MAX_SEGS {
            let (addr, len) = entry(self.base, self.index)?;
            let avail = len - self.skip.min(len);
            let take = avail.min(max - total);
            segs.push((GuestAddress(addr.wrapping_add(self.skip)), take));
            from.push((self.index, self.skip));
            total += take;
            if take == avail {
                self.index += 1;
                self.skip = 0;
            } else {
                self.skip += take;
            }
        }
        let more = self.index < self.count && total < max;
        let unit = unit.max(1);
        if more && !total.is_multiple_of(unit) {
            // Give back the partial sector at the end.
            let mut excess = total % unit;
            while let (Some(seg), Some(&(index, skip))) = (segs.last_mut(), from.last()) {
                if seg.1 > excess {
                    seg.1 -= excess;
                    (self.index, self.skip) = (index, skip + seg.1);
                    return Some(segs);
                }
                excess -= seg.1;
                segs.pop();
                from.pop();
                if excess == 0 {
                    (self.index, self.skip) = (index, skip);
                    return Some(segs);
                }
            }
            *self = start;
            return Some(Vec::new());
        }
        Some(segs)
    }

    /// Whether entries remain.
    pub fn exhausted(&self) -> bool {
        self.index >= self.count
    }
}

/// Copies `data` into the PRDT of `hdr`; returns the bytes written (the
/// guest's table may be shorter than the data).
pub fn write_prdt(mem: &GuestMemoryMmap, hdr: &CmdHeader, data: &[u8]) -> u32 {
    let mut cur = PrdtCursor::new(hdr);
    let Some(segs) = cur.next_chunk(mem, data.len() as u64, 1) else {
        return 0;
    };
    let mut done = 0usize;
    for (a, l) in segs {
        let n = l as usize;
        if mem.write_slice(&data[done..done + n], a).is_err() {
            break;
        }
        done += n;
    }
    done as u32
}

/// Fills `buf` from the PRDT of `hdr`; returns the bytes read.
pub fn read_prdt(mem: &GuestMemoryMmap, hdr: &CmdHeader, buf: &mut [u8]) -> usize {
    let mut cur = PrdtCursor::new(hdr);
    let Some(segs) = cur.next_chunk(mem, buf.len() as u64, 1) else {
        return 0;
    };
    let mut done = 0usize;
    for (a, l) in segs {
        let n = l as usize;
        if mem.read_slice(&mut buf[done..done + n], a).is_err() {
            break;
        }
        done += n;
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn put_entry(m: &GuestMemoryMmap, table: u64, i: u64, dba: u64, dbc: u32) {
        let at = GuestAddress(table + PRDT_OFFSET + i * 16);
        m.write_obj(dba, at).unwrap();
        m.write_obj(dbc, GuestAddress(at.0 + 12)).unwrap();
    }

    #[test]
    fn header_masks_reserved_bits() {
        let m = mem();
        let h = [0x25u8, 0, 3, 0, 0, 0, 0, 0, 0x7f, 0x10, 0, 0, 1, 0, 0, 0];
        m.write_slice(&h, GuestAddress(0x400 + 32)).unwrap();
        let hdr = CmdHeader::read(&m, 0x400, 1).unwrap();
        assert_eq!(hdr.prdtl, 3);
        assert!(hdr.atapi());
        assert_eq!(hdr.ctba, 0x1_0000_1000);
        // A list outside RAM.
        assert!(CmdHeader::read(&m, u64::MAX - 8, 1).is_none());
    }

    #[test]
    fn chunks_follow_entries_and_counts() {
        let m = mem();
        let hdr = CmdHeader {
            flags: 0,
            prdtl: 3,
            ctba: 0x1000,
        };
        // Interrupt flag and reserved bits in the count are ignored, the
        // address's bit 0 too.
        put_entry(&m, 0x1000, 0, 0x8001, 0x8000_01ff);
        put_entry(&m, 0x1000, 1, 0x9000, 0x3ff);
        put_entry(&m, 0x1000, 2, 0xa000, 0xfff);
        let mut c = PrdtCursor::new(&hdr);
        let s = c.next_chunk(&m, 1 << 20, 512).unwrap();
        assert_eq!(
            s,
            vec![
                (GuestAddress(0x8000), 512),
                (GuestAddress(0x9000), 1024),
                (GuestAddress(0xa000), 4096)
            ]
        );
        assert!(c.exhausted());
        // A maximum in the middle of an entry continues from there.
        let mut c = PrdtCursor::new(&hdr);
        let s = c.next_chunk(&m, 1024, 512).unwrap();
        assert_eq!(
            s,
            vec![(GuestAddress(0x8000), 512), (GuestAddress(0x9000), 512)]
        );
        let s = c.next_chunk(&m, 1024, 512).unwrap();
        assert_eq!(
            s,
            vec![(GuestAddress(0x9200), 512), (GuestAddress(0xa000), 512)]
        );
    }

    #[test]
    fn many_tiny_entries_are_chunked_on_sector_boundaries() {
        let m = mem();
        let hdr = CmdHeader {
            flags: 0,
            prdtl: 1000,
            ctba: 0x1000,
        };
        for i in 0..1000 {
            // 6 bytes each: MAX_SEGS of them is not a whole sector.
            put_entry(&m, 0x1000, i, 0x40000 + i * 8, 5);
        }
        let mut c = PrdtCursor::new(&hdr);
        let mut total = 0;
        let mut chunks = 0;
        while !c.exhausted() {
            let s = c.next_chunk(&m, 6000, 512).unwrap();
            let n: u64 = s.iter().map(|x| x.1).sum();
            assert!(s.len() <= MAX_SEGS);
            if c.exhausted() {
                total += n;
                break;
            }
            assert_eq!(n % 512, 0, "chunk {chunks} not whole sectors");
            assert!(n > 0);
            total += n;
            chunks += 1;
        }
        assert_eq!(total, 6000);
        // A table of 2-byte entries can never make a 4 KiB sector within
        // MAX_SEGS: the chunk comes back empty (the caller fails it).
        for i in 0..1000 {
            put_entry(&m, 0x1000, i, 0x40000, 1);
        }
        let mut c = PrdtCursor::new(&hdr);
        assert!(c.next_chunk(&m, 1 << 20, 4096).unwrap().is_empty());
    }

    #[test]
    fn unreadable_table_and_copies() {
        let m = mem();
        let hdr = CmdHeader {
            flags: 0,
            prdtl: 2,
            ctba: (1 << 20) - 0x80,
        };
        assert!(PrdtCursor::new(&hdr).next_chunk(&m, 512, 512).is_none());
        let hdr = CmdHeader {
            flags: 0,
            prdtl: 2,
            ctba: 0x1000,
        };
        put_entry(&m, 0x1000, 0, 0x8000, 3);
        put_entry(&m, 0x1000, 1, 0x9000, 0xff);
        let data: Vec<u8> = (0..10u8).collect();
        assert_eq!(write_prdt(&m, &hdr, &data), 10);
        let mut b = [0u8; 6];
        m.read_slice(&mut b, GuestAddress(0x9000)).unwrap();
        assert_eq!(b, [4, 5, 6, 7, 8, 9,]);
        let mut back = [0u8; 300];
        assert_eq!(read_prdt(&m, &hdr, &mut back), 260);
        // An entry pointing outside RAM stops the copy there.
        put_entry(&m, 0x1000, 1, 1 << 40, 0xff);
        assert_eq!(write_prdt(&m, &hdr, &data), 4);
    }

    #[test]
    fn a_cut_chunk_reads_each_entry_once() {
        // 300 entries of 5 bytes: MAX_SEGS of them is not a whole sector,
        // so the chunk is cut. The guest rewrites the table meanwhile
        // (each read of an entry answers 2 bytes more): the cut must use
        // what was read, not read again.
        let hdr = CmdHeader {
            flags: 0,
            prdtl: 300,
            ctba: 0x1000,
        };
        let mut reads = [0u64; 300];
        let mut c = PrdtCursor::new(&hdr);
        let segs = c
            .next_chunk_with(1 << 20, 512, &mut |_, i| {
                let n = &mut reads[usize::from(i)];
                *n += 1;
                Some((0x10000 + u64::from(i) * 16, 3 + 2 * *n))
            })
            .unwrap();
        assert!(reads.iter().all(|&n| n <= 1), "entries read again");
        // 1280 bytes read, cut to 1024: 204 whole entries and 4 bytes.
        assert_eq!(segs.len(), 205);
        assert_eq!(segs.iter().map(|s| s.1).sum::<u64>(), 1024);
        assert_eq!(segs[204], (GuestAddress(0x10000 + 204 * 16), 4));
        assert_eq!((c.index, c.skip), (204, 4));
    }
}
