//! UEFI pieces of the lab: Debian's OVMF (firmware built for QEMU's
//! i440FX, run by our bhyve from `-l bootrom`) and a standalone GRUB EFI
//! image that boots the lab's L2 kernel, given to OVMF as QEMU's
//! `-kernel` would (`-o boot.kernel=` with `fwcfg=qemu`).
//!
//! The GRUB image is built with `grub-mkstandalone -O x86_64-efi`
//! (`grub-efi-amd64-bin`): its memdisk holds `grub.cfg`, the kernel and
//! the initramfs, so OVMF needs no disk controller to boot Linux.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{io_err, run_cmd, LabError, Result};

/// Debian's OVMF (package `ovmf`): code, and the variable store template
/// each run copies (the store is written through to its file).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Printed by the GRUB image before and right after loading the kernel.
pub const GRUB_START_MARKER: &str = "LAB-GRUB-START";
pub const GRUB_BOOT_MARKER: &str = "LAB-GRUB-BOOT";

/// The bhyve arguments that make Debian's OVMF run: QEMU's i440FX host
/// bridge identity, the PIIX4 PM function (our `piix4-pm`) at 0:1.3
/// where OVMF looks for the PM block, the PM block off the debug port
/// (0x402), and QEMU's fw_cfg. `vars` is the run's variable store.
pub fn ovmf_args(vars: &Path) -> Vec<String> {
    let mut v: Vec<String> = [
        "-s",
        "0,hostbridge",
        "-o",
        "pci.0.0.0.pcireg.vendor=0x8086",
        "-o",
        "pci.0.0.0.pcireg.device=0x1237",
        "-o",
        "pci.0.0.0.pcireg.subvendor=0x1af4",
        "-o",
        "pci.0.0.0.pcireg.subdevice=0x1100",
        "-s",
        "1:3,piix4-pm",
        "-s",
        "31,lpc",
        "-o",
        "pm.base=0x600",
        "-l",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(format!("bootrom,{OVMF_CODE},{},fwcfg=qemu", vars.display()));
    v
}

/// Checks that Debian's OVMF is installed.
pub fn check_ovmf() -> Result<()> {
    for f in [OVMF_CODE, OVMF_VARS] {
        if !Path::new(f).exists() {
            return Err(LabError::Missing(format!(
                "{f} is missing: install Debian's ovmf (see .ci/run)"
            )));
        }
    }
    Ok(())
}

/// `grub.cfg` for the image: markers, then the kernel with `cmdline`
/// and the initramfs, both from the memdisk.
pub fn grub_cfg(cmdline: &str) -> Result<String> {
    // GRUB parses the line itself: quoting rules are its own, so keep to
    // what needs none.
    if cmdline.contains(['"', '\'', '\n', '\\', '$', ';']) {
        return Err(LabError::Format(format!(
            "kernel command line {cmdline:?} needs GRUB quoting"
        )));
    }
    Ok(format!(
        "set timeout=0\n\
         echo {GRUB_START_MARKER}\n\
         linux /vmlinuz {cmdline}\n\
         initrd /initrd\n\
         echo {GRUB_BOOT_MARKER}\n\
         boot\n"
    ))
}

/// Builds a standalone GRUB EFI application at `out` that boots `kernel`
/// with `initrd` and `cmdline`.
pub fn grub_image(out: &Path, kernel: &Path, initrd: &Path, cmdline: &str) -> Result<PathBuf> {
    if !Path::new("/usr/lib/grub/x86_64-efi").is_dir() {
        return Err(LabError::Missing(
            "/usr/lib/grub/x86_64-efi is missing: install Debian's grub-efi-amd64-bin (see .ci/run)"
                .into(),
        ));
    }
    let cfg = out.with_extension("cfg");
    std::fs::write(&cfg, grub_cfg(cmdline)?)
        .map_err(io_err(format!("writing {}", cfg.display())))?;
    let graft = |name: &str, p: &Path| format!("{name}={}", p.display());
    run_cmd(
        Command::new("grub-mkstandalone")
            .args(["-O", "x86_64-efi", "--locales=", "--fonts=", "--themes="])
            .arg("-o")
            .arg(out)
            .arg(graft("boot/grub/grub.cfg", &cfg))
            .arg(graft("vmlinuz", kernel))
            .arg(graft("initrd", initrd)),
    )?;
    Ok(out.to_path_buf())
}

/// The bytes Linux's efivarfs takes for a new variable: the attributes
/// (non-volatile, boot service and runtime access: 0x7, little-endian)
/// then the data.
pub fn efivar_payload(data: &[u8]) -> Vec<u8> {
    let mut v = 7u32.to_le_bytes().to_vec();
    v.extend_from_slice(data);
    v
}

/// Whether a variable store image holds `name` (UCS-2, as the
/// authenticated-variable store keeps names) followed by `data`: how the
/// host checks that a guest's write reached the file.
pub fn vars_file_has(store: &[u8], name: &str, data: &[u8]) -> bool {
    let mut needle: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
    needle.extend_from_slice(&[0, 0]);
    needle.extend_from_slice(data);
    store.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_cfg_boots_the_memdisk_kernel() {
        let c = grub_cfg("console=ttyS0 lab.script=ZWNobw==").unwrap();
        assert!(c.contains("linux /vmlinuz console=ttyS0 lab.script=ZWNobw==\n"));
        assert!(c.contains("initrd /initrd\n"));
        assert!(c.find(GRUB_START_MARKER) < c.find("linux "));
        assert!(grub_cfg("a;reboot").is_err());
        assert!(grub_cfg("x=$y").is_err());
    }

    #[test]
    fn ovmf_command_line_names_the_pieces_ovmf_needs() {
        let a = ovmf_args(Path::new("/v/vars.fd")).join(" ");
        assert!(a.contains("-s 1:3,piix4-pm"), "{a}");
        assert!(a.contains("pcireg.device=0x1237"), "{a}");
        assert!(a.ends_with(&format!("-l bootrom,{OVMF_CODE},/v/vars.fd,fwcfg=qemu")));
    }

    #[test]
    fn variables_are_found_in_a_store_image() {
        let mut store = vec![0xffu8; 64];
        store.extend("BhyveTest".encode_utf16().flat_map(u16::to_le_bytes));
        store.extend_from_slice(&[0, 0]);
        store.extend_from_slice(b"hello");
        assert!(vars_file_has(&store, "BhyveTest", b"hello"));
        assert!(!vars_file_has(&store, "BhyveTest", b"hellp"));
        assert!(!vars_file_has(&store, "Bhyve", b"hello"));
        assert_eq!(efivar_payload(b"hi"), [7, 0, 0, 0, b'h', b'i']);
    }
}
