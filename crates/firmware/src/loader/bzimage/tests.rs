use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::entry::BOOT_GDT;
use crate::loader::bootmem::{CMDLINE_ADDR, GDT_ADDR, PML4_ADDR};
use crate::loader::testutil::{mem, temp_file};
use crate::loader::{load_linux, LoadError};

fn put16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

/// A minimal bzImage: 1 setup sector after the boot sector, protocol
/// 2.15, 64-bit capable, then `payload` bytes of protected-mode code.
fn bzimage(payload: usize) -> Vec<u8> {
    let mut b = vec![0u8; 1024 + payload];
    b[0x1f1] = 1;
    put16(&mut b, 0x1fe, 0xaa55);
    b[0x200] = 0xeb;
    b[0x201] = 0x6a; // header ends at 0x26c
    b[0x202..0x206].copy_from_slice(b"HdrS");
    put16(&mut b, 0x206, 0x020f);
    b[0x211] = LOADED_HIGH;
    put32(&mut b, 0x214, 0x10_0000);
    put32(&mut b, 0x22c, 0x7fff_ffff);
    put16(&mut b, 0x236, XLF_KERNEL_64);
    put32(&mut b, 0x238, 2047);
    put32(&mut b, 0x260, 0x2_0000); // init_size
    for (i, x) in b[1024..].iter_mut().enumerate() {
        *x = (i * 7 + 3) as u8;
    }
    b
}

fn params(m: &vm_memory::GuestMemoryMmap) -> boot_params {
    m.read_obj(GuestAddress(BOOT_INFO_ADDR)).unwrap()
}

#[test]
fn loads_kernel_initrd_cmdline_and_e820() {
    let layout = MemLayout::new(128 << 20).unwrap();
    let m = mem(&layout);
    let img = bzimage(0x3000);
    let mut k = temp_file(&img);
    let rd_bytes: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    let mut rd = temp_file(&rd_bytes);
    let e = load_linux(
        &m,
        &layout,
        &mut k.1,
        Some(&mut rd.1),
        "console=ttyS0 root=/dev/vda",
    )
    .unwrap();

    assert_eq!(e.mode, EntryMode::Long64);
    assert_eq!(e.rip, 0x10_0200);
    assert_eq!(e.rsi, BOOT_INFO_ADDR);
    assert_eq!((e.cr3, e.gdt_base, e.gdt_limit), (PML4_ADDR, GDT_ADDR, 31));
    assert_eq!(e.code_selector(), 0x10);

    let mut loaded = vec![0u8; 0x3000];
    m.read_slice(&mut loaded, GuestAddress(0x10_0000)).unwrap();
    assert_eq!(loaded, img[1024..]);

    let p = params(&m);
    let hdr = p.hdr;
    assert_eq!(hdr.type_of_loader, 0xff);
    assert_eq!({ hdr.header }, 0x5372_6448);
    assert_eq!({ hdr.version }, 0x20f);
    assert_eq!({ hdr.cmd_line_ptr }, CMDLINE_ADDR as u32);
    let mut cmd = [0u8; 29];
    m.read_slice(&mut cmd, GuestAddress(CMDLINE_ADDR)).unwrap();
    assert_eq!(&cmd, b"console=ttyS0 root=/dev/vda\0\0");

    // initrd: page aligned, as high as low memory allows, above the kernel.
    let (rd_addr, rd_size) = ({ hdr.ramdisk_image } as u64, { hdr.ramdisk_size } as u64);
    assert_eq!(rd_size, 5000);
    assert_eq!(rd_addr % 4096, 0);
    assert!(rd_addr + rd_size <= 128 << 20 && rd_addr + rd_size + 4096 > 128 << 20);
    let mut back = vec![0u8; 5000];
    m.read_slice(&mut back, GuestAddress(rd_addr)).unwrap();
    assert_eq!(back, rd_bytes);
    assert_eq!(({ p.ext_ramdisk_image }, { p.ext_ramdisk_size }), (0, 0));

    let n = p.e820_entries as usize;
    let got: Vec<(u64, u64, u32)> = p.e820_table[..n]
        .iter()
        .map(|e| ({ e.addr }, { e.size }, { e.r#type }))
        .collect();
    let want: Vec<(u64, u64, u32)> = layout
        .e820()
        .iter()
        .map(|e| (e.addr, e.size, e.kind as u32))
        .collect();
    assert_eq!(got, want);

    // GDT and identity map.
    assert_eq!(
        m.read_obj::<u64>(GuestAddress(GDT_ADDR + 0x10)).unwrap(),
        BOOT_GDT[2]
    );
    let pdpt = m.read_obj::<u64>(GuestAddress(PML4_ADDR)).unwrap() & !0xfff;
    let pd3 = m.read_obj::<u64>(GuestAddress(pdpt + 3 * 8)).unwrap() & !0xfff;
    let last = m.read_obj::<u64>(GuestAddress(pd3 + 511 * 8)).unwrap();
    assert_eq!(last, 0xffe0_0000 | 0x83);
}

#[test]
fn header_past_its_declared_end_is_not_copied() {
    let layout = MemLayout::new(64 << 20).unwrap();
    let m = mem(&layout);
    let mut img = bzimage(0x1000);
    img[0x201] = 0x66; // header ends at 0x268, before kernel_info_offset
    img[0x268] = 0x55;
    let mut k = temp_file(&img);
    load_linux(&m, &layout, &mut k.1, None, "").unwrap();
    assert_eq!({ params(&m).hdr.kernel_info_offset }, 0);
    assert_eq!({ params(&m).hdr.init_size }, 0x2_0000);
}

#[test]
fn rejects_old_or_32bit_only_kernels() {
    let layout = MemLayout::new(64 << 20).unwrap();
    let m = mem(&layout);
    let mut old = bzimage(0x1000);
    put16(&mut old, 0x206, 0x0205);
    let e = load_linux(&m, &layout, &mut temp_file(&old).1, None, "").unwrap_err();
    assert_eq!(
        e.to_string(),
        "unsupported bzImage: boot protocol 2.05 is older than 2.06"
    );
    let mut no64 = bzimage(0x1000);
    put16(&mut no64, 0x236, 0);
    let e = load_linux(&m, &layout, &mut temp_file(&no64).1, None, "").unwrap_err();
    assert!(e.to_string().contains("XLF_KERNEL_64"), "{e}");
    let trunc = &bzimage(0)[..1024];
    let e = load_linux(&m, &layout, &mut temp_file(trunc).1, None, "").unwrap_err();
    assert!(matches!(e, LoadError::UnsupportedBzImage(_)), "{e}");
}

#[test]
fn too_big_kernel_initrd_or_cmdline() {
    let layout = MemLayout::new(4 << 20).unwrap();
    let m = mem(&layout);
    let e = load_linux(&m, &layout, &mut temp_file(&bzimage(4 << 20)).1, None, "").unwrap_err();
    assert!(matches!(e, LoadError::KernelTooBig { .. }), "{e}");
    let mut big_init = bzimage(0x1000);
    put32(&mut big_init, 0x260, 8 << 20);
    let e = load_linux(&m, &layout, &mut temp_file(&big_init).1, None, "").unwrap_err();
    assert!(matches!(e, LoadError::KernelTooBig { .. }), "{e}");

    let img = bzimage(0x1000);
    let mut rd = temp_file(&vec![1u8; 3 << 20]);
    let e = load_linux(&m, &layout, &mut temp_file(&img).1, Some(&mut rd.1), "").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("initrd of 3145728 bytes does not fit"),
        "{e}"
    );

    let long = "x".repeat(2048);
    let e = load_linux(&m, &layout, &mut temp_file(&img).1, None, &long).unwrap_err();
    assert_eq!(
        e.to_string(),
        "kernel command line is too long (2048 bytes, at most 2047)"
    );
}

#[test]
fn initrd_respects_initrd_addr_max() {
    let layout = MemLayout::new(64 << 20).unwrap();
    let m = mem(&layout);
    let mut img = bzimage(0x1000);
    put32(&mut img, 0x22c, (16 << 20) - 1);
    let mut rd = temp_file(&[9u8; 100]);
    load_linux(&m, &layout, &mut temp_file(&img).1, Some(&mut rd.1), "").unwrap();
    assert_eq!({ params(&m).hdr.ramdisk_image }, (16 << 20) - 4096);
}
