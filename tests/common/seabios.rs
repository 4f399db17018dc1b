//! Debian's SeaBIOS on our bhyve (tests/seabios.rs, and iPXE under it in
//! tests/common/ipxe.rs), with the command line docs/STATUS.md documents.

use std::path::Path;

/// Debian's SeaBIOS (package `seabios`), the 128 KiB image.
pub const BIOS: &str = "/usr/share/seabios/bios.bin";

/// QEMU's i440FX host bridge identity, which SeaBIOS checks to run its
/// PIIX code (`pcireg.*` on our host bridge).
const I440FX_HOSTBRIDGE: &str =
    "-s 0,hostbridge -o pci.0.0.0.pcireg.vendor=0x8086 -o pci.0.0.0.pcireg.device=0x1237";

/// bhyve's arguments for SeaBIOS `bios`: the i440FX host bridge, the `-s`
/// `slots`, the LPC bridge, the PM block moved off SeaBIOS's debug port
/// (0x402 is PM1_EN in the default block at 0x400), the ROM on QEMU's
/// fw_cfg, and SeaBIOS's debug port written to `log`.
pub fn seabios_args(bios: &str, slots: &[String], log: &Path) -> Vec<String> {
    let mut v: Vec<String> = I440FX_HOSTBRIDGE.split(' ').map(String::from).collect();
    for sl in slots {
        v.extend(["-s".to_string(), sl.clone()]);
    }
    v.extend(["-s", "31,lpc", "-o", "pm.base=0x600"].map(String::from));
    v.extend([
        "-l".to_string(),
        format!("bootrom,{bios},fwcfg=qemu"),
        "-l".to_string(),
        format!("debugcon,{}", log.display()),
    ]);
    v
}
