//! The uncompressed ELF kernel (with its PVH entry note) taken out of a
//! bzImage, as `extract-vmlinux` does. Debian's 6.1 kernels compress their
//! payload with LZ4 in the "legacy" frame format.

use crate::{LabError, Result};

const LZ4_LEGACY_MAGIC: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];
/// Each legacy-frame block decompresses to at most 8 MiB.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;
/// No kernel image is larger; bounds what a corrupt size can allocate.
const MAX_VMLINUX: usize = 512 << 20;

/// The bzImage's compressed payload, located through its setup header
/// (`setup_sects`, `payload_offset`, `payload_length`).
pub fn payload(bz: &[u8]) -> Result<&[u8]> {
    let bad = |m: &str| LabError::Format(format!("not a bzImage: {m}"));
    if bz.len() < 0x250 || &bz[0x202..0x206] != b"HdrS" {
        return Err(bad("no HdrS signature"));
    }
    let setup_sects = match bz[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let le32 = |o: usize| u32::from_le_bytes(bz[o..o + 4].try_into().unwrap()) as usize;
    let start = (setup_sects + 1) * 512 + le32(0x248);
    let len = le32(0x24c);
    start
        .checked_add(len)
        .filter(|&end| end <= bz.len())
        .map(|end| &bz[start..end])
        .ok_or_else(|| bad("payload outside the file"))
}

/// Decompresses an LZ4 legacy stream (as the kernel's build writes it: the
/// last four bytes give the uncompressed size and are not a block).
pub fn lz4_legacy(data: &[u8]) -> Result<Vec<u8>> {
    let bad = |m: String| LabError::Format(format!("LZ4 legacy stream: {m}"));
    if data.len() < 8 || data[..4] != LZ4_LEGACY_MAGIC {
        return Err(bad(
            "bad magic (only LZ4-compressed kernels are supported)".into()
        ));
    }
    let mut out = Vec::new();
    let mut block = vec![0u8; LZ4_LEGACY_BLOCK];
    let mut at = 4;
    while at + 4 <= data.len() {
        let size = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        // The trailing size word, or a new magic of a concatenated stream.
        if at + 4 + size > data.len() || data[at..at + 4] == LZ4_LEGACY_MAGIC {
            break;
        }
        let n = lz4_flex::block::decompress_into(&data[at + 4..at + 4 + size], &mut block)
            .map_err(|e| bad(format!("block at {at}: {e}")))?;
        if out.len() + n > MAX_VMLINUX {
            return Err(bad("output larger than any kernel".into()));
        }
        out.extend_from_slice(&block[..n]);
        at += 4 + size;
    }
    Ok(out)
}

/// The ELF vmlinux inside a bzImage.
pub fn extract(bz: &[u8]) -> Result<Vec<u8>> {
    let elf = lz4_legacy(payload(bz)?)?;
    if elf.len() < 4 || &elf[..4] != b"\x7fELF" {
        return Err(LabError::Format(
            "the bzImage payload did not decompress to an ELF image".into(),
        ));
    }
    Ok(elf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy(blocks: &[&[u8]]) -> Vec<u8> {
        let mut v = LZ4_LEGACY_MAGIC.to_vec();
        let mut total = 0u32;
        for b in blocks {
            let c = lz4_flex::block::compress(b);
            v.extend_from_slice(&(c.len() as u32).to_le_bytes());
            v.extend_from_slice(&c);
            total += b.len() as u32;
        }
        v.extend_from_slice(&total.to_le_bytes());
        v
    }

    #[test]
    fn bzimage_payload_round_trips() {
        let elf: Vec<u8> = b"\x7fELF"
            .iter()
            .copied()
            .chain((0..100_000u32).map(|i| (i % 251) as u8))
            .collect();
        let stream = legacy(&[&elf[..60_000], &elf[60_000..]]);
        let mut bz = vec![0u8; 5 * 512];
        bz[0x1f1] = 4;
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        bz[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        bz[0x24c..0x250].copy_from_slice(&(stream.len() as u32).to_le_bytes());
        bz.extend_from_slice(&[0; 16]);
        bz.extend_from_slice(&stream);
        assert_eq!(extract(&bz).unwrap(), elf);
        let short = &bz[..bz.len() - 10];
        assert!(extract(short).is_err(), "payload past the end is refused");
        assert!(extract(b"not a kernel").is_err());
    }

    #[test]
    fn corrupt_blocks_are_errors_not_panics() {
        let mut s = legacy(&[b"\x7fELF hello hello hello hello"]);
        for b in s[8..].iter_mut() {
            *b ^= 0x5a;
        }
        // Either outcome is fine; a panic or an overrun is not.
        let _ = lz4_legacy(&s);
        assert!(lz4_legacy(&[0, 1, 2]).is_err());
    }
}
