use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::layout::E820Type;
use crate::loader::bootmem::{CMDLINE_ADDR, GDT_ADDR};
use crate::loader::load_linux;
use crate::loader::testutil::{mem, temp_file};

const PADDR: u64 = 0x20_0000;
const ENTRY: u32 = 0x20_0010;

/// A minimal PVH ELF: one PT_LOAD of 0x100 file bytes (0x2000 in memory)
/// at 2 MiB and a PT_NOTE holding an unrelated note, then the PVH note.
fn elf(note: bool) -> Vec<u8> {
    let mut b = vec![0u8; 0x1100];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[6] = 1;
    b[16..18].copy_from_slice(&2u16.to_le_bytes());
    b[18..20].copy_from_slice(&62u16.to_le_bytes());
    b[24..32].copy_from_slice(&u64::from(ENTRY).to_le_bytes());
    b[32..40].copy_from_slice(&0x40u64.to_le_bytes());
    b[52..54].copy_from_slice(&64u16.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&2u16.to_le_bytes());
    let phdr =
        |b: &mut Vec<u8>, at: usize, t: u32, off: u64, addr: u64, filesz: u64, memsz: u64| {
            b[at..at + 4].copy_from_slice(&t.to_le_bytes());
            b[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
            b[at + 16..at + 24].copy_from_slice(&addr.to_le_bytes());
            b[at + 24..at + 32].copy_from_slice(&addr.to_le_bytes());
            b[at + 32..at + 40].copy_from_slice(&filesz.to_le_bytes());
            b[at + 40..at + 48].copy_from_slice(&memsz.to_le_bytes());
        };
    phdr(&mut b, 0x40, PT_LOAD, 0x1000, PADDR, 0x100, 0x2000);
    phdr(&mut b, 0x78, PT_NOTE, 0xb0, 0, 0x2c, 0x2c);
    // "GNU" note type 3 with 8 bytes, then "Xen" note 18 with the entry.
    let mut notes = Vec::new();
    for (name, kind, desc) in [
        (&b"GNU\0"[..], 3u32, &[1u8; 8][..]),
        (b"Xen\0", 18, &ENTRY.to_le_bytes()),
    ] {
        notes.extend_from_slice(&(name.len() as u32).to_le_bytes());
        notes.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        notes.extend_from_slice(&(if note { kind } else { 17 }).to_le_bytes());
        notes.extend_from_slice(name);
        notes.extend_from_slice(desc);
    }
    assert_eq!(notes.len(), 0x2c);
    b[0xb0..0xb0 + notes.len()].copy_from_slice(&notes);
    for (i, x) in b[0x1000..].iter_mut().enumerate() {
        *x = i as u8 ^ 0x5a;
    }
    b
}

fn r32(m: &GuestMemoryMmap, a: u64) -> u32 {
    m.read_obj(GuestAddress(a)).unwrap()
}
fn r64(m: &GuestMemoryMmap, a: u64) -> u64 {
    m.read_obj(GuestAddress(a)).unwrap()
}

#[test]
fn loads_segments_and_start_info() {
    let layout = MemLayout::new(256 << 20).unwrap();
    let m = mem(&layout);
    // Leftovers of a previous boot in the bss must be cleared.
    m.write_slice(&[0xffu8; 0x100], GuestAddress(PADDR + 0x1f00))
        .unwrap();
    let rd_bytes = vec![0xabu8; 3000];
    let mut rd = temp_file(&rd_bytes);
    let e = load_linux(
        &m,
        &layout,
        &mut temp_file(&elf(true)).1,
        Some(&mut rd.1),
        "cpus=4",
    )
    .unwrap();
    assert_eq!(e.mode, EntryMode::Protected32);
    assert_eq!((e.rip, e.rbx, e.cr3), (u64::from(ENTRY), BOOT_INFO_ADDR, 0));
    assert_eq!(
        (e.gdt_base, e.code_selector(), e.data_selector()),
        (GDT_ADDR, 0x08, 0x18)
    );

    let mut seg = vec![0u8; 0x100];
    m.read_slice(&mut seg, GuestAddress(PADDR)).unwrap();
    assert_eq!(seg, elf(true)[0x1000..]);
    assert_eq!(r64(&m, PADDR + 0x1ff8), 0);

    let si = BOOT_INFO_ADDR;
    assert_eq!(
        (r32(&m, si), r32(&m, si + 4), r32(&m, si + 8)),
        (HVM_START_MAGIC, 1, 0)
    );
    assert_eq!(r32(&m, si + 12), 1);
    let cmd = r64(&m, si + 24);
    assert_eq!(cmd, CMDLINE_ADDR);
    let mut c = [0u8; 7];
    m.read_slice(&mut c, GuestAddress(cmd)).unwrap();
    assert_eq!(&c, b"cpus=4\0");
    assert_eq!(r64(&m, si + 32), 0, "rsdp");

    let modlist = r64(&m, si + 16);
    let (rd_addr, rd_size) = (r64(&m, modlist), r64(&m, modlist + 8));
    assert_eq!(rd_size, 3000);
    assert_eq!(rd_addr, (256 << 20) - 4096);
    let mut back = vec![0u8; 3000];
    m.read_slice(&mut back, GuestAddress(rd_addr)).unwrap();
    assert_eq!(back, rd_bytes);

    let (map, n) = (r64(&m, si + 40), r32(&m, si + 48));
    let e820 = layout.e820();
    assert_eq!(n as usize, e820.len());
    for (i, want) in e820.iter().enumerate() {
        let a = map + 24 * i as u64;
        assert_eq!(
            (r64(&m, a), r64(&m, a + 8), r32(&m, a + 16)),
            (want.addr, want.size, want.kind as u32)
        );
    }
    assert_eq!(r32(&m, map + 24 + 16), E820Type::Reserved as u32);
}

#[test]
fn no_initrd_means_no_modules() {
    let layout = MemLayout::new(16 << 20).unwrap();
    let m = mem(&layout);
    load_linux(&m, &layout, &mut temp_file(&elf(true)).1, None, "").unwrap();
    assert_eq!(
        (r32(&m, BOOT_INFO_ADDR + 12), r64(&m, BOOT_INFO_ADDR + 16)),
        (0, 0)
    );
}

#[test]
fn elf_without_pvh_note_is_rejected() {
    let layout = MemLayout::new(16 << 20).unwrap();
    let m = mem(&layout);
    let e = load_linux(&m, &layout, &mut temp_file(&elf(false)).1, None, "").unwrap_err();
    assert!(matches!(e, LoadError::NoPvhNote), "{e}");
}

#[test]
fn bad_or_misplaced_segments_are_rejected() {
    let layout = MemLayout::new(16 << 20).unwrap();
    let m = mem(&layout);
    // Segment below 1 MiB.
    let mut low = elf(true);
    low[0x40 + 24..0x40 + 32].copy_from_slice(&0x8000u64.to_le_bytes());
    let e = load_linux(&m, &layout, &mut temp_file(&low).1, None, "").unwrap_err();
    assert!(matches!(e, LoadError::KernelTooBig { .. }), "{e}");
    // Segment past the end of RAM.
    let mut high = elf(true);
    high[0x40 + 40..0x40 + 48].copy_from_slice(&(32u64 << 20).to_le_bytes());
    let e = load_linux(&m, &layout, &mut temp_file(&high).1, None, "").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("kernel does not fit in guest memory"),
        "{e}"
    );
    // File data past the end of the file.
    let mut trunc = elf(true);
    trunc[0x40 + 32..0x40 + 40].copy_from_slice(&0x10_0000u64.to_le_bytes());
    let e = load_linux(&m, &layout, &mut temp_file(&trunc).1, None, "").unwrap_err();
    assert!(matches!(e, LoadError::BadElf(_)), "{e}");
    // Absurd program header count and a 32-bit ELF.
    let mut many = elf(true);
    many[56..58].copy_from_slice(&0xffffu16.to_le_bytes());
    assert!(load_linux(&m, &layout, &mut temp_file(&many).1, None, "").is_err());
    let mut elf32 = elf(true);
    elf32[4] = 1;
    assert!(matches!(
        load_linux(&m, &layout, &mut temp_file(&elf32).1, None, "").unwrap_err(),
        LoadError::BadElf(_)
    ));
    // Entry outside the image.
    let mut entry = elf(true);
    entry[0xb0 + 0x2c - 4..0xb0 + 0x2c].copy_from_slice(&0x50_0000u32.to_le_bytes());
    assert!(matches!(
        load_linux(&m, &layout, &mut temp_file(&entry).1, None, "").unwrap_err(),
        LoadError::BadElf(_)
    ));
}

#[test]
fn cmdline_limits() {
    let layout = MemLayout::new(16 << 20).unwrap();
    let m = mem(&layout);
    let e = load_linux(
        &m,
        &layout,
        &mut temp_file(&elf(true)).1,
        None,
        &"y".repeat(70000),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            LoadError::CmdlineTooLong {
                len: 70000,
                max: 65535
            }
        ),
        "{e}"
    );
    let e = load_linux(&m, &layout, &mut temp_file(&elf(true)).1, None, "a\0b").unwrap_err();
    assert!(matches!(e, LoadError::CmdlineNul));
}
