//! bhyve's fwctl on our `bhyve`: a hand-assembled boot ROM does what
//! edk2's BhyveFwCtlLib does (reset, signature at 0x511, a GET of
//! "hw.ncpu" through 0x510) and reports the CPU count through
//! pc-testdev. With `lpc.fwcfg=qemu` the same ports are QEMU's fw_cfg and
//! the signature check fails.

mod common;

use common::*;

const PAGE: usize = 4096;

/// pc-testdev's exit status for `out 0xf4, al`.
fn status(v: u8) -> i32 {
    (i32::from(v) << 1) | 1
}

/// 16-bit code with forward jumps to one failure exit, which reports the
/// number of the step that failed (in bl).
struct Asm {
    code: Vec<u8>,
    fail_jumps: Vec<usize>,
    step: u8,
}

impl Asm {
    fn new() -> Self {
        Asm {
            code: Vec::new(),
            fail_jumps: Vec::new(),
            step: 0,
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        self.code.extend_from_slice(b);
    }
    fn mov_dx(&mut self, port: u16) {
        self.bytes(&[0xba]);
        self.bytes(&port.to_le_bytes());
    }
    fn out_eax(&mut self, v: u32) {
        self.bytes(&[0x66, 0xb8]); // mov eax, imm32
        self.bytes(&v.to_le_bytes());
        self.bytes(&[0x66, 0xef]); // out dx, eax
    }
    /// Next step: bl = step; then a `jne fail` after the compare.
    fn next_step(&mut self) {
        self.step += 1;
        self.bytes(&[0xb3, self.step]); // mov bl, step
    }
    fn jne_fail(&mut self) {
        self.bytes(&[0x0f, 0x85, 0, 0]); // jne rel16
        self.fail_jumps.push(self.code.len());
    }
    fn expect_al(&mut self, v: u8) {
        self.next_step();
        self.bytes(&[0xec, 0x3c, v]); // in al, dx; cmp al, v
        self.jne_fail();
    }
    fn expect_eax(&mut self, v: u32) {
        self.next_step();
        self.bytes(&[0x66, 0xed, 0x66, 0x3d]); // in eax, dx; cmp eax, imm32
        self.bytes(&v.to_le_bytes());
        self.jne_fail();
    }
    fn finish(mut self) -> Vec<u8> {
        let fail = self.code.len();
        self.bytes(&[0x88, 0xd8, 0xe6, 0xf4, 0xf4]); // mov al, bl; out 0xf4, al; hlt
        for end in self.fail_jumps {
            let rel = (fail as i32 - end as i32) as i16;
            self.code[end - 2..end].copy_from_slice(&rel.to_le_bytes());
        }
        self.code
    }
}

/// The ROM's real-mode program (at f000:f100 through the ISA window).
fn fwctl_probe() -> Vec<u8> {
    let mut a = Asm::new();
    a.mov_dx(0x510);
    a.bytes(&[0x31, 0xc0, 0xef]); // xor ax, ax; out dx, ax: reset
    a.mov_dx(0x511);
    for c in *b"BHYV" {
        a.expect_al(c);
    }
    a.mov_dx(0x510);
    // GET "hw.ncpu": 12-byte header + 8 bytes of name, txid 0x77.
    for w in [
        20,
        3,
        0x77,
        u32::from_le_bytes(*b"hw.n"),
        u32::from_le_bytes(*b"cpu\0"),
    ] {
        a.out_eax(w);
    }
    // Response: 16 + 8-byte size + 4-byte value, op, txid, no error,
    // size 4 (64-bit), then the count.
    for w in [28, 3, 0x77, 0, 4, 0] {
        a.expect_eax(w);
    }
    a.bytes(&[0x66, 0xed, 0xe6, 0xf4, 0xf4]); // in eax, dx; out 0xf4, al; hlt
    a.finish()
}

/// A one-page ROM: the reset vector jumps to f000:f100, where `real` runs.
fn rom(real: &[u8]) -> Vec<u8> {
    let mut img = vec![0u8; PAGE];
    img[0x100..0x100 + real.len()].copy_from_slice(real);
    // ljmp $0xf000, $0xf100
    img[0xff0..0xff5].copy_from_slice(&[0xea, 0x00, 0xf1, 0x00, 0xf0]);
    img
}

#[test]
fn bhyve_firmware_reads_hw_ncpu_through_fwctl() {
    let s = Scratch::new("fwctl");
    let r = s.file("rom.bin", &rom(&fwctl_probe()));
    let lpc = format!("bootrom,{}", r.display());
    for cpus in ["1", "3"] {
        let o = s.run(&["-e", "-c", cpus, "-l", &lpc, "-l", "pc-testdev", "vm0"]);
        let n: u8 = cpus.parse().unwrap();
        assert_eq!(
            o.status.code(),
            Some(status(n)),
            "-c {cpus}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn qemu_fw_cfg_replaces_fwctl() {
    let s = Scratch::new("fwctl-qemu");
    let r = s.file("rom.bin", &rom(&fwctl_probe()));
    let lpc = format!("bootrom,{},fwcfg=qemu", r.display());
    let o = s.run(&["-e", "-l", &lpc, "-l", "pc-testdev", "vm0"]);
    // Step 1, the first signature byte: fw_cfg's selector 0 is "QEMU".
    assert_eq!(o.status.code(), Some(status(1)), "{}", stderr(&o));
}
