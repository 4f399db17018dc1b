//! Boot ROMs (`-l bootrom,romfile[,varfile]`): a hand-assembled ROM runs
//! from the reset vector through the ISA BIOS window into 32-bit code in
//! the ROM itself, finds its ROM read-only and its variable store a CFI
//! flash, and keeps what it programs there across runs.

mod common;

use common::*;

const PAGE: usize = 4096;
/// The test ROM is one page ending at 4 GiB; its variable store is one
/// page right below it.
const ROM_BASE: u32 = 0xffff_f000;
const VARS: u32 = ROM_BASE - PAGE as u32;

/// pc-testdev's exit status for `out 0xf4, al`.
fn status(v: u8) -> i32 {
    (i32::from(v) << 1) | 1
}

fn le32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

/// A one-page ROM. The reset vector (0xffff_fff0, ROM offset 0xff0) far
/// jumps to f000:f100, which is only reachable through the ISA BIOS
/// window (ROM offset 0x100 copied to 0xff100). `real` runs there in real
/// mode; `flat32`, if any, at ROM offset 0x200 (0xffff_f200), in 32-bit
/// protected mode entered by `real` with the GDT at ROM offset 0.
fn rom(real: &[u8], flat32: &[u8]) -> Vec<u8> {
    let mut img = vec![0u8; PAGE];
    // Null, flat 32-bit code (0x08), flat data (0x10).
    for (i, d) in [0u64, 0x00cf_9b00_0000_ffff, 0x00cf_9300_0000_ffff]
        .iter()
        .enumerate()
    {
        img[i * 8..i * 8 + 8].copy_from_slice(&d.to_le_bytes());
    }
    // GDT pseudo-descriptor at 0x18: limit, base.
    img[0x18..0x1a].copy_from_slice(&0x17u16.to_le_bytes());
    img[0x1a..0x1e].copy_from_slice(&le32(ROM_BASE));
    img[0x100..0x100 + real.len()].copy_from_slice(real);
    img[0x200..0x200 + flat32.len()].copy_from_slice(flat32);
    // ljmp $0xf000, $0xf100
    img[0xff0..0xff5].copy_from_slice(&[0xea, 0x00, 0xf1, 0x00, 0xf0]);
    img
}

/// Real-mode code that reports `v` and halts.
fn report16(v: u8) -> Vec<u8> {
    vec![
        0xb0, v, // mov al, v
        0xe6, 0xf4, // out 0xf4, al
        0xf4, // hlt
    ]
}

/// Real-mode code switching to 32-bit protected mode at 0xffff_f200.
fn to_flat32() -> Vec<u8> {
    let mut c = vec![
        0x2e, 0x66, 0x0f, 0x01, 0x16, 0x18, 0xf0, // lgdtl %cs:0xf018
        0x0f, 0x20, 0xc0, // mov eax, cr0
        0x0c, 0x01, // or al, 1
        0x0f, 0x22, 0xc0, // mov cr0, eax
        0x66, 0xea, // ljmpl $0x08, $0xffff_f200
    ];
    c.extend_from_slice(&le32(ROM_BASE + 0x200));
    c.extend_from_slice(&[0x08, 0x00]);
    c
}

/// 32-bit code: checks that a write to the ROM is dropped (else reports
/// 0x7f) and that a CFI status read of the store is 0 (else 0x7e), then
/// reads byte 0 of the variable store, programs that value + 1 there and
/// reports the value read.
fn vars_program() -> Vec<u8> {
    let mut c = vec![0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8]; // mov ax, 0x10; mov ds, ax
    let mov_mem_imm = |c: &mut Vec<u8>, addr: u32, v: u8| {
        c.extend_from_slice(&[0xc6, 0x05]); // mov byte [addr], v
        c.extend_from_slice(&le32(addr));
        c.push(v);
    };
    // A write to the ROM, then read it back into bl.
    mov_mem_imm(&mut c, ROM_BASE, 0x55);
    c.extend_from_slice(&[0x8a, 0x1d]); // mov bl, [ROM_BASE]
    c.extend_from_slice(&le32(ROM_BASE));
    c.extend_from_slice(&[0xb0, 0x7f, 0x84, 0xdb]); // mov al, 0x7f; test bl, bl
    let jnz1 = c.len();
    c.extend_from_slice(&[0x75, 0]); // jnz report
                                     // CFI read-status: reads 0.
    mov_mem_imm(&mut c, VARS, 0x70);
    c.extend_from_slice(&[0x8a, 0x1d]); // mov bl, [VARS]
    c.extend_from_slice(&le32(VARS));
    c.extend_from_slice(&[0xb0, 0x7e, 0x84, 0xdb]); // mov al, 0x7e; test bl, bl
    let jnz2 = c.len();
    c.extend_from_slice(&[0x75, 0]); // jnz report
    c.push(0xa0); // mov al, [VARS]
    c.extend_from_slice(&le32(VARS));
    c.extend_from_slice(&[0x88, 0xc1, 0xfe, 0xc1]); // mov cl, al; inc cl
    mov_mem_imm(&mut c, VARS, 0x10); // CFI write-byte
    c.extend_from_slice(&[0x88, 0x0d]); // mov [VARS], cl
    c.extend_from_slice(&le32(VARS));
    let report = c.len();
    c.extend_from_slice(&[0xe6, 0xf4, 0xf4]); // out 0xf4, al; hlt
    for j in [jnz1, jnz2] {
        c[j + 1] = (report - (j + 2)) as u8;
    }
    c
}

#[test]
fn rom_runs_from_the_reset_vector_through_the_isa_window() {
    let s = Scratch::new("bootrom");
    let r = s.file("rom.bin", &rom(&report16(0x2a), &[]));
    let r = r.to_str().unwrap();
    let lpc = format!("bootrom,{r}");
    // -e: nothing unhandled on the way; a ROM needs no bhyveload.
    let o = s.run(&["-e", "-l", &lpc, "-l", "pc-testdev", "vm0"]);
    assert_eq!(o.status.code(), Some(status(0x2a)), "{}", stderr(&o));
    // bhyve re-initializes the VM for every ROM boot.
    let o = s.run(&["-l", &lpc, "-l", "pc-testdev", "vm0"]);
    assert_eq!(o.status.code(), Some(status(0x2a)), "{}", stderr(&o));
}

#[test]
fn variable_store_persists_across_runs() {
    let s = Scratch::new("bootvars");
    let r = s.file("rom.bin", &rom(&to_flat32(), &vars_program()));
    let mut init = vec![0xffu8; PAGE];
    init[0] = 5;
    let v = s.file("vars.fd", &init);
    let lpc = format!("bootrom,{},{}", r.display(), v.display());
    for expect in [5u8, 6] {
        let o = s.run(&["-e", "-l", &lpc, "-l", "pc-testdev", "vm0"]);
        assert_eq!(
            o.status.code(),
            Some(status(expect)),
            "run expecting {expect}: {}",
            stderr(&o)
        );
    }
    let file = std::fs::read(&v).unwrap();
    assert_eq!(file.len(), PAGE);
    assert_eq!(file[0], 7, "the second run's value was written back");
    assert!(file[1..].iter().all(|&b| b == 0xff), "only byte 0 changed");
}

#[test]
fn bad_roms_are_one_line_errors() {
    let s = Scratch::new("bootrom-bad");
    let odd = s.file("odd.bin", &[0u8; 100]);
    let page = s.file("page.bin", &[0u8; PAGE]);
    let tiny = s.file("tiny.fd", &[0u8; 16]);
    for (lpc, msg) in [
        (
            "bootrom,/nonexistent/rom.bin".to_string(),
            "bhyve: Error opening bootrom \"/nonexistent/rom.bin\": No such file or directory\n"
                .to_string(),
        ),
        (
            format!("bootrom,{}", odd.display()),
            "bhyve: ROM size 100 is not a multiple of the page size\n".into(),
        ),
        (
            format!("bootrom,{},{}", page.display(), tiny.display()),
            "bhyve: Invalid bootrom variable size 16\n".into(),
        ),
    ] {
        let o = s.run(&["-l", &lpc, "vm0"]);
        assert_eq!(o.status.code(), Some(4), "{lpc}: {}", stderr(&o));
        assert_eq!(stderr(&o), msg, "{lpc}");
    }
    // Nothing was created for the failed runs.
    assert!(!s.rundir().join("vm0").exists());
}
