//! The emulated controllers (issue 6) judged by Linux's own drivers on
//! real hardware virtualization: our bhyve inside the lab's L1 (KVM on
//! emulated AMD-V, see crates/lab) booting Debian's generic kernel (L2;
//! the cloud kernel has no ahci) with its ahci/libata, sd, sr and isofs
//! drivers (and, appended by their authors, nvme and e1000).
//!
//! One L1 boot serves every test of this file (lab_common).

mod lab_common;

use std::sync::OnceLock;

use bhyve_lab::{lab_dir, GuestImages};
use lab_common::*;

/// Debian's generic kernel with the storage drivers of this file.
fn hw_images() -> &'static GuestImages {
    static IMAGES: OnceLock<Result<GuestImages, String>> = OnceLock::new();
    IMAGES
        .get_or_init(|| {
            GuestImages::prepare_kernel(
                &lab_dir(),
                "linux-image-amd64",
                &["ahci", "sd_mod", "sr_mod", "isofs"],
            )
            .map_err(|e| e.to_string())
        })
        .as_ref()
        .unwrap_or_else(|e| panic!("the guest images could not be built: {e}"))
}

/// The `LABR key value` lines the guest printed.
fn labr(r: &Run) -> Vec<String> {
    r.console
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').split_once("LABR "))
        .map(|(_, v)| v.trim_end().to_string())
        .collect()
}

/// Linux's ahci driver on `-s 4,ahci,hd:FILE,…,cd:ISO`: sda shows the
/// model, serial (libata's VPD page 80h), firmware revision, `nmrr=1`
/// as non-rotational, NCQ and TRIM; a pattern written with fsync and
/// read back after dropping the page cache matches the host file by
/// hash; `blkdiscard` (DSM TRIM) punches a hole in it; sr0 mounts an ISO
/// 9660 image xorriso made in L1 and a file on it matches by hash; the
/// interrupts came through the HBA's MSI vector.
#[test]
fn linux_ahci_disk_and_cdrom() {
    let script = r#"
i=0; while { [ ! -e /sys/block/sda ] || [ ! -e /sys/block/sr0 ]; } && [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done
echo "LABR size $(cat /sys/block/sda/size)"
echo "LABR model $(cat /sys/block/sda/device/model)"
echo "LABR rev $(cat /sys/block/sda/device/rev)"
echo "LABR serial $(tail -c +5 /sys/block/sda/device/vpd_pg80)"
echo "LABR rotational $(cat /sys/block/sda/queue/rotational)"
echo "LABR ncq $(cat /sys/block/sda/device/queue_depth)"
echo "LABR discard $(cat /sys/block/sda/queue/discard_max_bytes)"
echo "LABR cdmodel $(cat /sys/block/sr0/device/model)"
yes bhyve-ahci | head -c 4194304 | dd of=/dev/sda bs=65536 seek=16 conv=fsync 2>/dev/null
echo "LABR write $?"
sync
echo 3 >/proc/sys/vm/drop_caches
echo "LABR readback $(dd if=/dev/sda bs=65536 skip=16 count=64 2>/dev/null | sha256sum | cut -c1-64)"
blkdiscard -o 8388608 -l 4194304 /dev/sda
echo "LABR blkdiscard $?"
sync
mkdir -p /mnt/cd
mount -t iso9660 -o ro /dev/sr0 /mnt/cd
echo "LABR mount $?"
echo "LABR cdfile $(sha256sum /mnt/cd/DATA.BIN | cut -c1-64)"
umount /mnt/cd
lab-pci-irqs 0000:00:04.0
echo "LABR done"
"#;
    let r = run_on(
        hw_images(),
        script,
        "lab.end=poweroff",
        r#"
img=$TMPDIR/ahci-$$.img
dd if=/dev/urandom of=$img bs=1M count=16 2>/dev/null
result du_before $(du -k $img | cut -f1)
cd_dir=$TMPDIR/ahci-cd-$$
mkdir -p $cd_dir
head -c 3000000 /dev/urandom >$cd_dir/DATA.BIN
result cd_want $(sha256sum $cd_dir/DATA.BIN | cut -c1-64)
iso=$TMPDIR/ahci-$$.iso
xorriso -as mkisofs -quiet -V LABCD -o $iso $cd_dir
result xorriso $?
$BHYVE -A -c 1 -m 256M -s 0,hostbridge \
    -s "4,ahci,hd:$img,ser=LABSER42,model=LAB AHCI DISK,rev=R42,nmrr=1,cd:$iso" \
    -s 31,lpc -l com1,stdio -o boot.kernel="$BZIMAGE" \
    -o boot.initrd="$INITRD" -o boot.cmdline="$CMDLINE" vm-ahci >console.log 2>bhyve.err </dev/null
result bhyve $?
result want $(yes bhyve-ahci | head -c 4194304 | sha256sum | cut -c1-64)
result file $(dd if=$img bs=65536 skip=16 count=64 2>/dev/null | sha256sum | cut -c1-64)
result hole_nonzero $(dd if=$img bs=1M skip=8 count=4 2>/dev/null | tr -d '\0' | wc -c)
result du_after $(du -k $img | cut -f1)
result size $(stat -c %s $img)
rm -rf $img $iso $cd_dir
cat bhyve.err
"#,
    );
    r.expect_console("LABR done");
    r.expect("bhyve", "1");
    r.expect("xorriso", "0");
    let lines = labr(&r);
    // What Linux saw, for the record (`--nocapture`).
    eprintln!("guest: {lines:?}");
    for want in [
        "size 32768",
        "model LAB AHCI DISK",
        "rev R42",
        "serial LABSER42",
        "rotational 0",
        "cdmodel BHYVE DVD-ROM",
        "write 0",
        "blkdiscard 0",
        "mount 0",
    ] {
        assert!(
            lines.iter().any(|l| l == want),
            "{want:?} not in {lines:?}\n{}",
            r.explain()
        );
    }
    let num = |key: &str| -> u64 {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {lines:?}"))
    };
    assert!(num("ncq") > 1, "NCQ not in use: {lines:?}");
    // libahci took our single MSI vector, and it counted interrupts.
    let p = bhyve_lab::PciIrqs::parse(&r.console, "0000:00:04.0")
        .unwrap_or_else(|| panic!("no pci-irqs line\n{}", r.explain()));
    assert_eq!(p.caps, vec![bhyve_lab::PciIrqs::MSI], "{p:?}");
    assert_eq!(p.msi_modes, vec!["msi".to_string()], "{p:?}");
    assert!(
        p.irqs.iter().all(|(c, _)| c.starts_with("PCI-MSI")) && p.total() > 0,
        "{p:?}"
    );
    assert!(num("discard") > 0, "no TRIM: {lines:?}");
    let want = r.result("want").unwrap();
    r.expect("file", &want);
    assert!(lines.contains(&format!("readback {want}")), "{lines:?}");
    let cd = r.result("cd_want").unwrap();
    assert!(lines.contains(&format!("cdfile {cd}")), "{lines:?}");
    r.expect("hole_nonzero", "0");
    r.expect("size", "16777216");
    let before: u64 = r.result("du_before").unwrap().parse().unwrap();
    let after: u64 = r.result("du_after").unwrap().parse().unwrap();
    assert!(
        after + 4096 <= before,
        "no hole punched: {before} KiB -> {after} KiB"
    );
}
