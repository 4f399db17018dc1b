//! Physical Region Page lists (NVMe 1.4 §4.3): the guest-physical
//! segments a command's data lives in.
//!
//! Every pointer is the guest's: offsets are checked, list pages are
//! read through vm-memory (a list outside RAM fails the command), the
//! walk is bounded by the transfer length (capped by MDTS before we get
//! here), and list chaining is bounded too, so a list page that only
//! points at itself cannot make us spin.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::spec::{Status, PAGE};

/// The segments of a `len`-byte transfer described by PRP1/PRP2,
/// contiguous ones merged.
pub fn segments(
    mem: &GuestMemoryMmap,
    prp1: u64,
    prp2: u64,
    len: u64,
) -> Result<Vec<(GuestAddress, u64)>, Status> {
    let mut segs: Vec<(GuestAddress, u64)> = Vec::new();
    let mut push = |addr: u64, n: u64| match segs.last_mut() {
        Some(last) if last.0 .0.checked_add(last.1) == Some(addr) => last.1 += n,
        _ => segs.push((GuestAddress(addr), n)),
    };
    if len == 0 {
        return Ok(Vec::new());
    }
    // Bits 1:0 of PRP1 are reserved (bhyve ignores them too).
    let prp1 = prp1 & !3;
    let first = len.min(PAGE - (prp1 & (PAGE - 1)));
    push(prp1, first);
    let mut left = len - first;
    if left == 0 {
        return Ok(segs);
    }
    if left <= PAGE {
        if prp2 & (PAGE - 1) != 0 {
            return Err(Status::INVALID_PRP_OFFSET);
        }
        push(prp2, left);
        return Ok(segs);
    }
    let mut list = prp2;
    // Each list page but the last holds at least one data entry unless
    // the guest chains pointers only: a transfer never needs more hops.
    let mut hops = left / PAGE + 2;
    let mut entries = [0u64; (PAGE / 8) as usize];
    while left > 0 {
        if list & 7 != 0 {
            return Err(Status::INVALID_PRP_OFFSET);
        }
        if hops == 0 {
            return Err(Status::INVALID_FIELD);
        }
        hops -= 1;
        let slots = ((PAGE - (list & (PAGE - 1))) / 8) as usize;
        // Only as many entries as the data still needs (plus a pointer).
        let want = slots.min(left.div_ceil(PAGE) as usize + 1);
        let mut raw = [0u8; PAGE as usize];
        mem.read_slice(&mut raw[..want * 8], GuestAddress(list))
            .map_err(|_| Status::DATA_TRANSFER_ERROR)?;
        for (i, e) in entries.iter_mut().take(want).enumerate() {
            *e = u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        }
        let mut next = None;
        for (i, &e) in entries.iter().take(want).enumerate() {
            if left == 0 {
                break;
            }
            if i == slots - 1 && left > PAGE {
                next = Some(e);
                break;
            }
            if e & (PAGE - 1) != 0 {
                return Err(Status::INVALID_PRP_OFFSET);
            }
            let n = left.min(PAGE);
            push(e, n);
            left -= n;
        }
        match next {
            Some(n) => list = n,
            None if left > 0 => return Err(Status::INVALID_FIELD),
            None => {}
        }
    }
    Ok(segs)
}

/// Copies `data` (an admin command's answer) to the PRPs.
pub fn copy_to(mem: &GuestMemoryMmap, prp1: u64, prp2: u64, data: &[u8]) -> Result<(), Status> {
    let mut at = 0usize;
    for (addr, n) in segments(mem, prp1, prp2, data.len() as u64)? {
        let n = n as usize;
        mem.write_slice(&data[at..at + n], addr)
            .map_err(|_| Status::DATA_TRANSFER_ERROR)?;
        at += n;
    }
    Ok(())
}

/// Fills `buf` from the PRPs (e.g. DSM ranges).
pub fn copy_from(
    mem: &GuestMemoryMmap,
    prp1: u64,
    prp2: u64,
    buf: &mut [u8],
) -> Result<(), Status> {
    let mut at = 0usize;
    for (addr, n) in segments(mem, prp1, prp2, buf.len() as u64)? {
        let n = n as usize;
        mem.read_slice(&mut buf[at..at + n], addr)
            .map_err(|_| Status::DATA_TRANSFER_ERROR)?;
        at += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn put_list(m: &GuestMemoryMmap, at: u64, entries: &[u64]) {
        for (i, e) in entries.iter().enumerate() {
            m.write_obj(*e, GuestAddress(at + 8 * i as u64)).unwrap();
        }
    }

    #[test]
    fn one_and_two_pages() {
        let m = mem();
        let s = segments(&m, 0x1000, 0, 512).unwrap();
        assert_eq!(s, vec![(GuestAddress(0x1000), 512)]);
        // An offset into the first page; PRP2 is the second page.
        let s = segments(&m, 0x1f00, 0x8000, 0x200).unwrap();
        assert_eq!(
            s,
            vec![(GuestAddress(0x1f00), 0x100), (GuestAddress(0x8000), 0x100)]
        );
        // Contiguous pages merge.
        let s = segments(&m, 0x1000, 0x2000, 0x2000).unwrap();
        assert_eq!(s, vec![(GuestAddress(0x1000), 0x2000)]);
        assert_eq!(
            segments(&m, 0x1000, 0x2010, 0x2000),
            Err(Status::INVALID_PRP_OFFSET)
        );
        assert_eq!(segments(&m, 0x1000, 0, 0).unwrap(), vec![]);
    }

    #[test]
    fn lists_and_chaining() {
        let m = mem();
        // 4 pages: PRP1 + a list of 3.
        put_list(&m, 0x10000, &[0x20000, 0x40000, 0x41000]);
        let s = segments(&m, 0x30000, 0x10000, 0x4000).unwrap();
        assert_eq!(
            s,
            vec![
                (GuestAddress(0x30000), 0x1000),
                (GuestAddress(0x20000), 0x1000),
                (GuestAddress(0x40000), 0x2000)
            ]
        );
        // A list starting at the last slot of its page chains at once...
        m.write_obj(0x12000u64, GuestAddress(0x11ff8)).unwrap();
        put_list(&m, 0x12000, &[0x50000, 0x51000]);
        let s = segments(&m, 0x30000, 0x11ff8, 0x3000).unwrap();
        assert_eq!(
            s,
            vec![
                (GuestAddress(0x30000), 0x1000),
                (GuestAddress(0x50000), 0x2000)
            ]
        );
        // ...and one whose only slot points at itself ends with an error.
        m.write_obj(0x13ff8u64, GuestAddress(0x13ff8)).unwrap();
        assert_eq!(
            segments(&m, 0x30000, 0x13ff8, 0x3000),
            Err(Status::INVALID_FIELD)
        );
        // Misaligned entries and list pointers.
        put_list(&m, 0x14000, &[0x20010, 0x21000]);
        assert_eq!(
            segments(&m, 0x30000, 0x14000, 0x3000),
            Err(Status::INVALID_PRP_OFFSET)
        );
        assert_eq!(
            segments(&m, 0x30000, 0x14004, 0x3000),
            Err(Status::INVALID_PRP_OFFSET)
        );
    }

    #[test]
    fn full_list_page_chains() {
        let m = mem();
        // 600 data pages: PRP1, 511 entries + pointer, then 88 more.
        let mut first: Vec<u64> = (0..511).map(|i| 0x8_0000 + i * 0x1000).collect();
        first.push(0x3000);
        put_list(&m, 0x2000, &first);
        let rest: Vec<u64> = (511..599).map(|i| 0x8_0000 + i * 0x1000).collect();
        put_list(&m, 0x3000, &rest);
        let s = segments(&m, 0x1000, 0x2000, 600 * 0x1000).unwrap();
        assert_eq!(
            s,
            vec![
                (GuestAddress(0x1000), 0x1000),
                (GuestAddress(0x8_0000), 599 * 0x1000)
            ]
        );
    }

    #[test]
    fn outside_guest_memory() {
        let m = mem();
        // A list page outside RAM fails; data pages outside RAM are the
        // backend's to refuse (EFAULT), but copies fail here.
        assert_eq!(
            segments(&m, 0x1000, 1 << 40, 0x3000),
            Err(Status::DATA_TRANSFER_ERROR)
        );
        assert_eq!(
            copy_to(&m, 1 << 40, 0, &[1, 2, 3]),
            Err(Status::DATA_TRANSFER_ERROR)
        );
        let mut b = [0u8; 8];
        assert!(copy_from(&m, 0xff000 + 0xffc, 0x100000, &mut b).is_err());
        copy_to(&m, 0x5ffc, 0x9000, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        copy_from(&m, 0x5ffc, 0x9000, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4, 5, 6, 7, 8]);
    }
}
