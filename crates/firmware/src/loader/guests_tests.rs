//! The real test guests (crates/testguests) through load_linux.

use vm_memory::{Bytes, GuestAddress};

use super::bootmem::{BOOT_INFO_ADDR, CMDLINE_ADDR};
use super::load_linux;
use super::testutil::{mem, temp_file};
use crate::entry::EntryMode;
use crate::layout::MemLayout;

#[test]
fn every_pvh_guest_loads() {
    let layout = MemLayout::new(256 << 20).unwrap();
    for name in bhyve_testguests::GUESTS
        .iter()
        .filter(|n| !n.starts_with("bzimage"))
    {
        let m = mem(&layout);
        let img = bhyve_testguests::guest_bytes(name).unwrap();
        let mut rd = temp_file(b"initrd");
        let e = load_linux(
            &m,
            &layout,
            &mut temp_file(img).1,
            Some(&mut rd.1),
            "cpus=2",
        )
        .unwrap();
        assert_eq!(e.mode, EntryMode::Protected32, "{name}");
        assert_eq!(e.rbx, BOOT_INFO_ADDR);
        // The entry point holds the guest's first instruction (cli).
        assert_eq!(
            m.read_obj::<u8>(GuestAddress(e.rip)).unwrap(),
            0xfa,
            "{name}"
        );
        assert_eq!(
            m.read_obj::<u32>(GuestAddress(BOOT_INFO_ADDR)).unwrap(),
            0x336e_c578
        );
    }
}

#[test]
fn bzimage_guest_loads() {
    let layout = MemLayout::new(256 << 20).unwrap();
    let m = mem(&layout);
    let img = bhyve_testguests::guest_bytes("bzimage_inspect").unwrap();
    let mut rd = temp_file(&[7u8; 5000]);
    let e = load_linux(
        &m,
        &layout,
        &mut temp_file(img).1,
        Some(&mut rd.1),
        "console=ttyS0",
    )
    .unwrap();
    assert_eq!(
        (e.mode, e.rip, e.rsi),
        (EntryMode::Long64, 0x10_0200, BOOT_INFO_ADDR)
    );
    assert_eq!(m.read_obj::<u8>(GuestAddress(e.rip)).unwrap(), 0xfa);
    assert_eq!(
        m.read_obj::<u8>(GuestAddress(BOOT_INFO_ADDR + 0x210))
            .unwrap(),
        0xff
    );
    assert_eq!(
        m.read_obj::<u32>(GuestAddress(BOOT_INFO_ADDR + 0x228))
            .unwrap(),
        CMDLINE_ADDR as u32
    );
    assert_eq!(
        m.read_obj::<u32>(GuestAddress(BOOT_INFO_ADDR + 0x21c))
            .unwrap(),
        5000
    );
}
