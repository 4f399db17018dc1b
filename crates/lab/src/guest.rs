//! L2 guest images: Debian's cloud kernel (bzImage, and the ELF vmlinux
//! inside it for the PVH entry) and a busybox initramfs whose `/init` runs
//! a test script given on the kernel command line (`lab.script=`, base64)
//! or found on a disk (`lab.disk=/dev/…`, an ext4 image holding
//! `/test.sh`). It prints markers on the console and, when the script
//! returns, reboots (bhyve exits 0) or, with `lab.end=poweroff`, powers off
//! (through ACPI S5 with `-A`: bhyve exits 1).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cpio::Cpio;
use crate::kmod::ModuleTree;
use crate::programs::{self, Program};
use crate::{debs, io_err, run_cmd, vmlinux, LabError, Result};

/// Printed by `/init` once the guest's userspace runs.
pub const GUEST_USERSPACE_MARKER: &str = "LAB-GUEST-USERSPACE";
/// Printed by `/init` after the script, with `status=N`.
pub const GUEST_END_MARKER: &str = "LAB-GUEST-END";

/// The kernel's limit on x86 (COMMAND_LINE_SIZE) bounds what
/// `lab.script=` can carry; longer scripts go on a disk image.
pub const MAX_CMDLINE: usize = 2048;

const INIT: &str = r#"#!/bin/sh
# The lab's L2 init (see crates/lab/src/guest.rs).
export PATH=/bin:/sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do
    insmod /lib/modules/$m.ko || echo "LAB-GUEST: insmod $m failed"
done
echo "LAB-GUEST-USERSPACE cpus=$(grep -c ^processor /proc/cpuinfo)"
disk=
end=reboot
for w in $(cat /proc/cmdline); do
    case "$w" in
    lab.script=*) echo "${w#lab.script=}" | base64 -d > /lab.sh ;;
    lab.disk=*) disk="${w#lab.disk=}" ;;
    lab.end=poweroff) end=poweroff ;;
    esac
done
if [ -n "$disk" ]; then
    mkdir -p /disk
    if mount -o ro "$disk" /disk && [ -f /disk/test.sh ]; then
        cp /disk/test.sh /lab.sh
    else
        echo "LAB-GUEST: no /test.sh on $disk"
    fi
fi
st=none
if [ -f /lab.sh ]; then
    sh /lab.sh
    st=$?
fi
echo "LAB-GUEST-END status=$st"
sync
$end -f
"#;

/// `lab-pci-irqs BDF`, in every image: one `LABR pci-irqs` line with the
/// function's capability IDs (walked in its config space), the modes of
/// its MSI/MSI-X vectors (`msi_irqs`) and, per interrupt it uses (those
/// vectors, else its INTx line), the irqchip and the count from
/// /proc/interrupts. Parsed by [`PciIrqs::parse`].
const PCI_IRQS: &str = r#"#!/bin/sh
bdf=$1 d=/sys/bus/pci/devices/$1
[ -d "$d" ] || { echo "LABR pci-irqs $bdf absent"; exit 1; }
caps= n=0
p=$(od -An -tu1 -j52 -N1 "$d/config")
p=$((p & 252))
while [ "$p" -ge 64 ] && [ $n -lt 48 ]; do
    set -- $(od -An -tu1 -j$p -N2 "$d/config")
    caps="$caps,$1" p=$((${2:-0} & 252)) n=$((n + 1))
done
msi=$(cat "$d"/msi_irqs/* 2>/dev/null | tr '\n' ',')
if [ -n "$msi" ]; then irqs=$(ls "$d/msi_irqs"); else irqs=$(cat "$d/irq"); fi
out=
for i in $irqs; do
    set -- $(grep "^ *$i:" /proc/interrupts)
    [ $# -gt 0 ] && shift
    sum=0
    while [ $# -gt 0 ] && [ "$1" -eq "$1" ] 2>/dev/null; do sum=$((sum + $1)); shift; done
    out="$out,${1:-none}:$sum"
done
echo "LABR pci-irqs $bdf caps=${caps#,} msi=${msi%,} irqs=${out#,}"
"#;

/// What `lab-pci-irqs` reported for a PCI function.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PciIrqs {
    /// Capability IDs in list order (5 MSI, 9 vendor, 0x11 MSI-X, …).
    pub caps: Vec<u8>,
    /// `msi` or `msix` per vector the driver enabled (empty: INTx).
    pub msi_modes: Vec<String>,
    /// (irqchip, interrupts counted) per interrupt in use.
    pub irqs: Vec<(String, u64)>,
}

impl PciIrqs {
    pub const MSI: u8 = 0x05;
    pub const MSIX: u8 = 0x11;

    /// Reads the `pci-irqs BDF …` line for `bdf` out of a guest console.
    pub fn parse(console: &str, bdf: &str) -> Option<Self> {
        let head = format!("LABR pci-irqs {bdf} ");
        let line = console
            .lines()
            .find_map(|l| l.split_once(&head).map(|(_, r)| r.trim_end()))?;
        let mut out = Self::default();
        for field in line.split(' ') {
            let (k, v) = field.split_once('=')?;
            let items = v.split(',').filter(|i| !i.is_empty());
            match k {
                "caps" => out.caps = items.map(|c| c.parse().ok()).collect::<Option<_>>()?,
                "msi" => out.msi_modes = items.map(str::to_string).collect(),
                "irqs" => {
                    out.irqs = items
                        .map(|i| {
                            let (chip, n) = i.rsplit_once(':')?;
                            Some((chip.to_string(), n.parse().ok()?))
                        })
                        .collect::<Option<_>>()?
                }
                _ => return None,
            }
        }
        Some(out)
    }

    /// Interrupts counted over every line the function uses.
    pub fn total(&self) -> u64 {
        self.irqs.iter().map(|(_, n)| n).sum()
    }
}

/// The files an L2 boot needs: the vmlinux is extracted once per kernel
/// version; the initramfs (a few MB, built in well under a second) is
/// rebuilt on every call, so `/init` changes always take effect.
#[derive(Debug, Clone)]
pub struct GuestImages {
    pub kernel_version: String,
    pub bzimage: PathBuf,
    /// The ELF vmlinux (PVH entry) extracted from `bzimage`.
    pub vmlinux: PathBuf,
    pub initramfs: PathBuf,
}

impl GuestImages {
    /// Fetches `linux-image-cloud-amd64` and busybox and builds the images
    /// under `lab_dir`; `modules` (with their dependencies) are inserted by
    /// `/init` before the script runs.
    pub fn prepare(lab_dir: &Path, modules: &[&str]) -> Result<Self> {
        Self::build(lab_dir, "linux-image-cloud-amd64", modules, &[], true)
    }

    /// [`prepare`](Self::prepare) with Debian `programs` in `/bin` beside
    /// busybox.
    pub fn prepare_with(lab_dir: &Path, modules: &[&str], programs: &[Program]) -> Result<Self> {
        Self::build(lab_dir, "linux-image-cloud-amd64", modules, programs, true)
    }

    /// [`prepare`](Self::prepare) with another Debian kernel
    /// meta-package, e.g. `linux-image-amd64` for drivers the cloud
    /// kernel lacks (it has no 9P). For bzImage boots: `vmlinux` exists
    /// only if the kernel is LZ4-compressed (the generic one is not).
    pub fn prepare_kernel(lab_dir: &Path, meta: &str, modules: &[&str]) -> Result<Self> {
        Self::build(lab_dir, meta, modules, &[], false)
    }

    /// [`prepare_kernel`](Self::prepare_kernel) with Debian `programs`
    /// in `/bin` beside busybox (iperf3 over the generic kernel's e1000).
    pub fn prepare_kernel_with(
        lab_dir: &Path,
        meta: &str,
        modules: &[&str],
        programs: &[Program],
    ) -> Result<Self> {
        Self::build(lab_dir, meta, modules, programs, false)
    }

    fn build(
        lab_dir: &Path,
        meta: &str,
        modules: &[&str],
        programs: &[Program],
        need_vmlinux: bool,
    ) -> Result<Self> {
        let cache = lab_dir.join("cache");
        let kernel = debs::kernel(&cache, meta)?;
        let busybox = debs::busybox(&cache)?;
        let mut parts: Vec<&str> = modules.to_vec();
        parts.extend(programs.iter().map(|p| p.name()));
        let tag = if parts.is_empty() {
            "base".to_string()
        } else {
            parts.join("+")
        };
        let dir = lab_dir.join("images").join(&kernel.version);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;

        let vmlinux_path = dir.join("vmlinux");
        if !vmlinux_path.exists() {
            let bz = std::fs::read(&kernel.bzimage)
                .map_err(io_err(format!("reading {}", kernel.bzimage.display())))?;
            match vmlinux::extract(&bz) {
                Ok(v) => write_atomic(&vmlinux_path, &v)?,
                Err(e) if need_vmlinux => return Err(e),
                Err(_) => {}
            }
        }

        let initramfs = dir.join(format!("initramfs-{tag}.cpio"));
        let mut c = Cpio::new();
        c.host_file("bin/busybox", 0o755, &busybox)?;
        // /init installs the other applets' links itself.
        c.symlink("bin/sh", "busybox");
        for d in ["proc", "sys", "dev", "tmp", "disk"] {
            c.dir(d);
        }
        c.chardev("dev/console", 5, 1);
        c.file("init", 0o755, INIT.as_bytes());
        c.file("bin/lab-pci-irqs", 0o755, PCI_IRQS.as_bytes());
        for p in programs {
            programs::add(&cache, &mut c, *p)?;
        }
        let tree = if modules.is_empty() {
            None
        } else {
            Some(ModuleTree::scan(&kernel.modules)?)
        };
        let mut order = String::new();
        if let Some(tree) = &tree {
            for (name, path) in tree.load_order(modules)? {
                c.host_file(&format!("lib/modules/{name}.ko"), 0o644, &path)?;
                order.push_str(&name);
                order.push('\n');
            }
        }
        c.file("modules.order", 0o644, order.as_bytes());
        write_atomic(&initramfs, &c.finish())?;

        Ok(Self {
            kernel_version: kernel.version,
            bzimage: kernel.bzimage,
            vmlinux: vmlinux_path,
            initramfs,
        })
    }
}

/// The L2 kernel command line: the serial console on com1, reboot on
/// panic (a broken boot ends bhyve quickly instead of hanging), the script,
/// and `extra` words.
pub fn cmdline(script: &str, extra: &str) -> Result<String> {
    let line = format!(
        "console=ttyS0 panic=-1 {extra} lab.script={}",
        base64(script.as_bytes())
    );
    if line.len() >= MAX_CMDLINE {
        return Err(LabError::Format(format!(
            "kernel command line of {} bytes exceeds {MAX_CMDLINE}: put the script on a disk image",
            line.len()
        )));
    }
    Ok(line)
}

/// An ext4 image of `size_mib` holding `/test.sh` (run by `/init` when the
/// kernel command line says `lab.disk=DEV`) and `files`, built without root
/// by `mkfs.ext4 -d`.
pub fn ext4_image(path: &Path, size_mib: u32, script: &str, files: &[(&str, &[u8])]) -> Result<()> {
    let staging = path.with_extension("d");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(io_err(format!("creating {}", staging.display())))?;
    let mut all: Vec<(&str, &[u8])> = vec![("test.sh", script.as_bytes())];
    all.extend_from_slice(files);
    for (rel, data) in all {
        let p = staging.join(rel.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("creating {}", parent.display())))?;
        }
        std::fs::write(&p, data).map_err(io_err(format!("writing {}", p.display())))?;
    }
    let _ = std::fs::remove_file(path);
    let r = run_cmd(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "labtest", "-d"])
            .arg(&staging)
            .arg(path)
            .arg(format!("{size_mib}M")),
    );
    let _ = std::fs::remove_dir_all(&staging);
    r.map(|_| ())
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, data).map_err(io_err(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_err(format!("renaming to {}", path.display())))
}

/// Standard base64 (RFC 4648, with padding), as busybox `base64 -d` reads.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn pci_irqs_lines_parse() {
        let console = "noise\r\n[ 1.0] LABR pci-irqs 0000:00:04.0 caps=17,9,9 msi=msix,msix irqs=PCI-MSI:1,PCI-MSI:40\r\n";
        let p = PciIrqs::parse(console, "0000:00:04.0").unwrap();
        assert_eq!(p.caps, [PciIrqs::MSIX, 9, 9]);
        assert_eq!(p.msi_modes, ["msix", "msix"]);
        assert_eq!(p.total(), 41);
        let intx = "LABR pci-irqs 0000:00:04.0 caps=5,9 msi= irqs=IO-APIC:12\n";
        let p = PciIrqs::parse(intx, "0000:00:04.0").unwrap();
        assert_eq!((p.caps.as_slice(), p.msi_modes.len()), (&[5u8, 9][..], 0));
        assert_eq!(p.irqs, [("IO-APIC".to_string(), 12)]);
        assert!(PciIrqs::parse(intx, "0000:00:05.0").is_none());
        assert!(PciIrqs::parse("LABR pci-irqs 0000:00:04.0 absent", "0000:00:04.0").is_none());
        assert!(PciIrqs::parse(
            "LABR pci-irqs 0000:00:04.0 caps=x msi= irqs=",
            "0000:00:04.0"
        )
        .is_none());
    }

    #[test]
    fn long_scripts_are_refused_on_the_command_line() {
        assert!(cmdline("echo hi", "")
            .unwrap()
            .contains("lab.script=ZWNobyBoaQ=="));
        assert!(cmdline(&"x".repeat(2000), "").is_err());
    }
}
