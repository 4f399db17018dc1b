//! Just enough ELF reading to copy a dynamically linked Debian program
//! into an L2 image: its interpreter (`PT_INTERP`) and the libraries it
//! names (`DT_NEEDED`). Files come from Debian packages, but are still
//! parsed with every offset checked: a short or odd file is an error,
//! never a panic.

use crate::{LabError, Result};

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;

/// What the dynamic loader needs to run a file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Dynamic {
    /// `PT_INTERP`, e.g. `/lib64/ld-linux-x86-64.so.2` (None for a
    /// shared library).
    pub interp: Option<String>,
    /// `DT_NEEDED` names, in file order.
    pub needed: Vec<String>,
}

struct Phdr {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

fn bad(what: &str) -> LabError {
    LabError::Format(format!("ELF: {what}"))
}

fn u16_at(b: &[u8], at: u64) -> Result<u16> {
    let at = usize::try_from(at).map_err(|_| bad("offset"))?;
    b.get(at..at.checked_add(2).ok_or_else(|| bad("offset"))?)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| bad("truncated"))
}

fn add(a: u64, b: u64) -> Result<u64> {
    a.checked_add(b).ok_or_else(|| bad("offset overflow"))
}

fn u32_at(b: &[u8], at: u64) -> Result<u32> {
    Ok(u32::from(u16_at(b, at)?) | u32::from(u16_at(b, add(at, 2)?)?) << 16)
}

fn u64_at(b: &[u8], at: u64) -> Result<u64> {
    Ok(u64::from(u32_at(b, at)?) | u64::from(u32_at(b, add(at, 4)?)?) << 32)
}

/// The NUL-terminated string at file offset `at`.
fn cstr(b: &[u8], at: u64) -> Result<String> {
    let at = usize::try_from(at).map_err(|_| bad("string offset"))?;
    let rest = b.get(at..).ok_or_else(|| bad("string outside the file"))?;
    let end = rest
        .iter()
        .position(|&c| c == 0)
        .ok_or_else(|| bad("unterminated string"))?;
    String::from_utf8(rest[..end].to_vec()).map_err(|_| bad("string not UTF-8"))
}

/// Reads the interpreter and needed libraries of a 64-bit little-endian
/// ELF file.
pub fn dynamic(b: &[u8]) -> Result<Dynamic> {
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return Err(bad("not a 64-bit little-endian ELF file"));
    }
    let phoff = u64_at(b, 0x20)?;
    let phentsize = u64::from(u16_at(b, 0x36)?);
    let phnum = u64::from(u16_at(b, 0x38)?);
    if phentsize < 56 {
        return Err(bad("program header entries too small"));
    }
    let mut phdrs = Vec::new();
    for i in 0..phnum {
        let at = add(phoff, i * phentsize)?;
        phdrs.push(Phdr {
            kind: u32_at(b, at)?,
            offset: u64_at(b, add(at, 8)?)?,
            vaddr: u64_at(b, add(at, 16)?)?,
            filesz: u64_at(b, add(at, 32)?)?,
        });
    }
    let mut out = Dynamic::default();
    if let Some(p) = phdrs.iter().find(|p| p.kind == PT_INTERP) {
        out.interp = Some(cstr(b, p.offset)?);
    }
    let Some(dynp) = phdrs.iter().find(|p| p.kind == PT_DYNAMIC) else {
        return Ok(out);
    };
    // DT_STRTAB is an address: map it to a file offset through PT_LOAD.
    let to_offset = |vaddr: u64| {
        phdrs
            .iter()
            .filter(|p| p.kind == PT_LOAD)
            .find(|p| vaddr >= p.vaddr && vaddr - p.vaddr < p.filesz)
            .ok_or_else(|| bad("address outside the loaded segments"))
            .and_then(|p| add(p.offset, vaddr - p.vaddr))
    };
    let mut strtab = None;
    let mut needed = Vec::new();
    for i in 0..dynp.filesz / 16 {
        let at = add(dynp.offset, i * 16)?;
        let (tag, val) = (u64_at(b, at)?, u64_at(b, add(at, 8)?)?);
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed.push(val),
            DT_STRTAB => strtab = Some(to_offset(val)?),
            _ => {}
        }
    }
    if !needed.is_empty() {
        let strtab = strtab.ok_or_else(|| bad("DT_NEEDED without DT_STRTAB"))?;
        for n in needed {
            out.needed.push(cstr(b, add(strtab, n)?)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF: one PT_LOAD covering the file at vaddr 0x400000,
    /// PT_INTERP and PT_DYNAMIC with two DT_NEEDED entries.
    fn sample() -> Vec<u8> {
        let mut b = vec![0u8; 0x200];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&3u16.to_le_bytes());
        let ph = |b: &mut Vec<u8>, i: usize, kind: u32, off: u64, vaddr: u64, sz: u64| {
            let at = 64 + i * 56;
            b[at..at + 4].copy_from_slice(&kind.to_le_bytes());
            b[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
            b[at + 16..at + 24].copy_from_slice(&vaddr.to_le_bytes());
            b[at + 32..at + 40].copy_from_slice(&sz.to_le_bytes());
        };
        ph(&mut b, 0, PT_LOAD, 0, 0x400000, 0x200);
        ph(&mut b, 1, PT_INTERP, 0x100, 0x400100, 12);
        ph(&mut b, 2, PT_DYNAMIC, 0x140, 0x400140, 64);
        b[0x100..0x10c].copy_from_slice(b"/lib64/ld.so");
        // strtab at 0x180: "\0liba.so\0libb.so\0"
        b[0x180..0x191].copy_from_slice(b"\0liba.so\0libb.so\0");
        let dynent = |b: &mut Vec<u8>, i: usize, tag: u64, val: u64| {
            let at = 0x140 + i * 16;
            b[at..at + 8].copy_from_slice(&tag.to_le_bytes());
            b[at + 8..at + 16].copy_from_slice(&val.to_le_bytes());
        };
        dynent(&mut b, 0, DT_NEEDED, 1);
        dynent(&mut b, 1, DT_STRTAB, 0x400180);
        dynent(&mut b, 2, DT_NEEDED, 9);
        b
    }

    #[test]
    fn reads_interpreter_and_needed_libraries() {
        let d = dynamic(&sample()).unwrap();
        assert_eq!(d.interp.as_deref(), Some("/lib64/ld.so"));
        assert_eq!(d.needed, ["liba.so", "libb.so"]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(dynamic(b"not elf").is_err());
        let s = sample();
        for len in [0, 63, 64, 100, 0x140, 0x185] {
            let _ = dynamic(&s[..len]);
        }
        let mut s = sample();
        // A strtab address outside every PT_LOAD.
        s[0x158..0x160].copy_from_slice(&0xdead_0000u64.to_le_bytes());
        assert!(dynamic(&s).is_err());
        let mut s = sample();
        s[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(dynamic(&s).is_err());
    }

    #[test]
    fn reads_a_real_program_when_present() {
        // The host's own /bin/sh (any Debian) is dynamically linked to libc.
        let Ok(b) = std::fs::read("/bin/sh") else {
            return;
        };
        let d = dynamic(&b).unwrap();
        assert!(d.interp.is_some(), "{d:?}");
        assert!(d.needed.iter().any(|n| n.starts_with("libc.so")), "{d:?}");
    }
}
