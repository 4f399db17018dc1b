//! The emulated controllers (issue 6) judged by Linux's own drivers on
//! real hardware virtualization: our bhyve inside the lab's L1 (KVM on
//! emulated AMD-V, see crates/lab) booting Debian's generic kernel (L2;
//! the cloud kernel has no ahci) with its ahci/libata, sd, sr and isofs
//! drivers (and nvme, e1000 and 8250_pci for the PCI uart).
//!
//! One L1 boot serves every test of this file (lab_common).

mod lab_common;

use std::sync::OnceLock;

use bhyve_lab::{GuestImages, PciIrqs, Program};
use lab_common::*;

/// Debian's generic kernel with the storage drivers of this file.
fn hw_images() -> &'static GuestImages {
    static IMAGES: OnceLock<Result<GuestImages, String>> = OnceLock::new();
    generic_kernel_images(&IMAGES, &["ahci", "sd_mod", "sr_mod", "isofs"], &[])
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
    let script = format!(
        r#"
i=0; while {{ [ ! -e /sys/block/sda ] || [ ! -e /sys/block/sr0 ]; }} && [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done
echo "LABR size $(cat /sys/block/sda/size)"
echo "LABR model $(cat /sys/block/sda/device/model)"
echo "LABR rev $(cat /sys/block/sda/device/rev)"
echo "LABR serial $(tail -c +5 /sys/block/sda/device/vpd_pg80)"
echo "LABR rotational $(cat /sys/block/sda/queue/rotational)"
echo "LABR ncq $(cat /sys/block/sda/device/queue_depth)"
echo "LABR discard $(cat /sys/block/sda/queue/discard_max_bytes)"
echo "LABR cdmodel $(cat /sys/block/sr0/device/model)"
{}
mkdir -p /mnt/cd
mount -t iso9660 -o ro /dev/sr0 /mnt/cd
echo "LABR mount $?"
echo "LABR cdfile $(sha256sum /mnt/cd/DATA.BIN | cut -c1-64)"
umount /mnt/cd
lab-pci-irqs 0000:00:04.0
echo "LABR done"
"#,
        disk::guest_io("/dev/sda", "bhyve-ahci")
    );
    let make_iso = r#"cd_dir=$TMPDIR/ahci-cd-$$
mkdir -p $cd_dir
head -c 3000000 /dev/urandom >$cd_dir/DATA.BIN
result cd_want $(sha256sum $cd_dir/DATA.BIN | cut -c1-64)
iso=$TMPDIR/ahci-$$.iso
xorriso -as mkisofs -quiet -V LABCD -o $iso $cd_dir
result xorriso $?
"#;
    let boot = bhyve_l2(
        r#"-c 1 -s "4,ahci,hd:$img,ser=LABSER42,model=LAB AHCI DISK,rev=R42,nmrr=1,cd:$iso""#,
        "vm-ahci",
    );
    let job = disk::job(
        "ahci",
        "bhyve-ahci",
        make_iso,
        &boot,
        "rm -rf $iso $cd_dir\n",
    );
    let r = run_on(hw_images(), &script, "lab.end=poweroff", &job);
    r.expect_console("LABR done");
    r.expect_bhyve("1");
    r.expect("xorriso", "0");
    let lines = disk::expect_io(
        &r,
        &[
            "size 32768",
            "model LAB AHCI DISK",
            "rev R42",
            "serial LABSER42",
            "rotational 0",
            "cdmodel BHYVE DVD-ROM",
            "mount 0",
        ],
    );
    // What Linux saw, for the record (`--nocapture`).
    eprintln!("guest: {lines:?}");
    assert!(labr_num(&lines, "ncq") > 1, "NCQ not in use: {lines:?}");
    // libahci took our single MSI vector, and it counted interrupts.
    let p = r.pci_irqs("0000:00:04.0");
    assert_eq!(p.caps, vec![PciIrqs::MSI], "{p:?}");
    assert_eq!(p.msi_modes, vec!["msi".to_string()], "{p:?}");
    assert!(
        p.irqs.iter().all(|(c, _)| c.starts_with("PCI-MSI")) && p.total() > 0,
        "{p:?}"
    );
    assert!(labr_num(&lines, "discard") > 0, "no TRIM: {lines:?}");
    let cd = r.result("cd_want").unwrap();
    assert!(lines.contains(&format!("cdfile {cd}")), "{lines:?}");
}

// ---- nvme, e1000 and the PCI uart (Linux's nvme, e1000 and 8250_pci) ----

/// The generic kernel with nvme and e1000 (the cloud kernel has no
/// e1000; 8250_pci is built into both), iperf3 and ethtool.
fn nic_images() -> &'static GuestImages {
    static IMAGES: OnceLock<Result<GuestImages, String>> = OnceLock::new();
    generic_kernel_images(
        &IMAGES,
        &["nvme", "e1000"],
        &[Program::Iperf3, Program::Ethtool],
    )
}

/// Linux's nvme driver on `-s 4,nvme,FILE,maxq=4,ser=…,eui64=…` with two
/// vCPUs: the model, serial and EUI-64 we configured; one I/O queue per
/// CPU (Linux asks for 2, `maxq` allows 4), each moving data (writes and
/// O_DIRECT reads pinned to each CPU; every I/O queue's MSI-X vector
/// counted interrupts); the pattern matches the host file by hash after
/// bhyve exits, and `blkdiscard` (DSM deallocate) punches a hole in it.
#[test]
fn linux_nvme_io_queues_hashes_and_discard() {
    let io = r#"
i=0; while [ ! -e /sys/block/nvme0n1 ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done
c=/sys/class/nvme/nvme0 b=/sys/block/nvme0n1
echo "LABR size $(cat $b/size)"
echo "LABR model $(cat $c/model)"
echo "LABR serial $(cat $c/serial)"
echo "LABR eui $(cat $b/eui)"
echo "LABR mq $(ls $b/mq | wc -l)"
echo "LABR discard $(cat $b/queue/discard_max_bytes)"
yes bhyve-nvme | head -c 4194304 >/tmp/p
taskset 1 dd if=/tmp/p of=/dev/nvme0n1 bs=64k seek=16 count=32 oflag=direct 2>/dev/null; a=$?
taskset 2 dd if=/tmp/p of=/dev/nvme0n1 bs=64k skip=32 seek=48 count=32 oflag=direct 2>/dev/null
echo "LABR write $a$?"
for m in 1 2; do
echo "LABR readback$m $(taskset $m dd if=/dev/nvme0n1 bs=64k skip=16 count=64 iflag=direct 2>/dev/null | sha256sum | cut -c1-64)"
done
"#;
    let irqs = r#"awk '/nvme0q/ {s=0; for (i=2; i<=NF && $i ~ /^[0-9]+$/; i++) s+=$i; print "LABR irq " $NF " " s}' /proc/interrupts
lab-pci-irqs 0000:00:04.0
echo "LABR done"
"#;
    let script = [io, &disk::guest_discard("/dev/nvme0n1"), irqs].concat();
    let boot = bhyve_l2(
        r#"-c 2 -s "4,nvme,$img,maxq=4,ser=LABNVME42,eui64=0x0123456789abcdef""#,
        "vm-nvme",
    );
    let job = disk::job("nvme", "bhyve-nvme", "", &boot, "");
    let r = run_on(nic_images(), &script, "lab.end=poweroff", &job);
    r.expect_console("LABR done");
    r.expect_bhyve("1");
    let lines = r.expect_labr(&[
        "size 32768",
        "model bhyve-NVMe",
        "serial LABNVME42",
        "eui 01 23 45 67 89 ab cd ef",
        "write 00",
        "blkdiscard 0",
    ]);
    let want = disk::expect_file(&r);
    for m in [1, 2] {
        assert!(
            lines.contains(&format!("readback{m} {want}")),
            "readback on CPU mask {m}: {lines:?}"
        );
    }
    assert!(
        labr_num(&lines, "mq ") >= 2,
        "fewer than 2 hardware queues: {lines:?}"
    );
    assert!(labr_num(&lines, "discard ") > 0, "no discard: {lines:?}");
    // nvme0q0 is the admin queue; every I/O queue must have interrupted.
    let io_irqs: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("irq nvme0q"))
        .filter_map(|l| l.split_once(' '))
        .filter(|(q, _)| *q != "0")
        .map(|(_, n)| n.parse().unwrap_or(0))
        .collect();
    assert!(
        io_irqs.len() >= 2 && io_irqs.iter().all(|&n| n > 0),
        "I/O queue interrupts {io_irqs:?}: {lines:?}\n{}",
        r.explain()
    );
    eprintln!("nvme I/O queue interrupts: {io_irqs:?}");
    let p = r.pci_irqs("0000:00:04.0");
    assert!(p.caps.contains(&PciIrqs::MSIX), "{p:?}");
    assert!(
        p.msi_modes.len() >= 3 && p.msi_modes.iter().all(|m| m == "msix"),
        "{p:?}"
    );
}

/// Linux's e1000 driver on `-s 3,e1000,tap3,mac=…`: `ethtool -i` and the
/// sysfs driver link name e1000, the MAC is the configured one, the link
/// comes up, L2 pings L1's end of the tap (small and full-size frames)
/// and iperf3 runs TCP for 5 s each way against a server in L1 (TSO and
/// checksum offload in Linux's default settings); the figures are
/// printed, not judged.
#[test]
fn linux_e1000_ping_iperf3_and_ethtool() {
    let script = r#"
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done
n=/sys/class/net/eth0
echo "LABR mac $(cat $n/address)"
echo "LABR driver $(basename $(readlink $n/device/driver))"
ethtool -i eth0 | sed 's/^/LABR ethtool /'
ethtool -k eth0 | grep -E '^(tcp-seg|tx-check)' | sed 's/^/LABR offload /'
ip link set eth0 up
ip addr add 10.77.3.2/24 dev eth0
i=0; while [ "$(cat $n/carrier)" != 1 ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done
echo "LABR carrier $(cat $n/carrier)"
ping -c 3 -W 5 10.77.3.1 >/dev/null && echo "LABR ping ok"
ping -c 3 -W 5 -s 1472 10.77.3.1 >/dev/null && echo "LABR bigping ok"
for r in "" -R; do
iperf3 -c 10.77.3.1 -t 5 -f m $r >/tmp/o 2>&1
echo "LABR iperf$r status $?"
grep -E 'receiver|error' /tmp/o | sed "s/^/LABR iperf$r /"
done
lab-pci-irqs 0000:00:03.0
echo "LABR done"
"#;
    let job = format!(
        r#"
(
    i=0
    while [ ! -e /sys/class/net/tap3 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
    ip addr add 10.77.3.1/24 dev tap3 && ip link set tap3 up
) &
iperf3 -s >iperf-server.log 2>&1 &
srv=$!
{}
result bhyve $?
kill $srv
cat bhyve.err
"#,
        bhyve_l2("-c 1 -s 3,e1000,tap3,mac=02:be:fa:e1:00:42", "vm-e1000")
    );
    let r = run_on(nic_images(), script, "lab.end=poweroff", &job);
    r.expect_console("LABR done");
    r.expect_bhyve("1");
    let lines = r.expect_labr(&[
        "mac 02:be:fa:e1:00:42",
        "driver e1000",
        "ethtool driver: e1000",
        "ethtool bus-info: 0000:00:03.0",
        "carrier 1",
        "ping ok",
        "bigping ok",
        "iperf status 0",
        "iperf-R status 0",
    ]);
    for dir in ["iperf ", "iperf-R "] {
        let rate = lines
            .iter()
            .filter(|l| l.starts_with(dir) && l.ends_with("receiver"))
            .find_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let at = w.iter().position(|x| *x == "Mbits/sec")?;
                w[at - 1].parse::<f64>().ok()
            })
            .unwrap_or_else(|| panic!("no {dir}receiver line: {lines:?}\n{}", r.explain()));
        assert!(rate > 0.0, "{dir}{rate} Mbit/s");
        let way = if dir == "iperf " { "up" } else { "down" };
        eprintln!("iperf3 over e1000, {way}: {rate} Mbit/s");
    }
    for l in lines.iter().filter(|l| l.starts_with("offload ")) {
        eprintln!("e1000 {l}");
    }
    // Linux's e1000 has no MSI support: INTx on the I/O APIC.
    let p = r.pci_irqs("0000:00:03.0");
    assert!(p.total() > 0, "no interrupt counted: {p:?}");
}

/// Linux's 8250_pci binds our PCI 16550 (131f:2000, its SIIG 1-port
/// entry) and gives it a ttyS; L2 writes a line to that tty, L1 (a client
/// of `tcp=127.0.0.1:7905`) reads it and sends it back prefixed, and L2
/// reads the echo: bytes both ways through the backend, with interrupts.
#[test]
fn linux_8250_pci_tty_echoes_through_tcp() {
    let script = r#"
p=/sys/bus/pci/devices/0000:00:05.0
i=0; while [ ! -d $p/tty ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done
t=$(ls $p/tty)
echo "LABR ids $(cat $p/vendor) $(cat $p/device)"
echo "LABR driver $(basename $(readlink $p/driver))"
echo "LABR uart $(cat /sys/class/tty/$t/type 2>/dev/null)"
exec 3<>/dev/$t
stty 115200 raw -echo <&3
echo "hello from L2 on $t" >&3
read -t 60 l <&3
echo "LABR got $l"
lab-pci-irqs 0000:00:05.0
exec 3<&-
echo "LABR done"
"#;
    let job = format!(
        r#"
# L1's loopback is down until someone needs it.
ip link set lo up
{} &
vm=$!
for i in $(seq 100); do
    {{ exec 5<>/dev/tcp/127.0.0.1/7905; }} 2>/dev/null && break
    sleep 0.1
done
if read -r -t 200 line <&5; then
    result l1_got "$line"
    printf 'echo: %s\n' "$line" >&5
fi
wait_bhyve $vm
exec 5<&-
cat bhyve.err
"#,
        bhyve_l2("-c 1 -s 5,uart,tcp=127.0.0.1:7905", "vm-uart")
    );
    let r = run_on(nic_images(), script, "lab.end=poweroff", &job);
    r.expect_console("LABR done");
    r.expect_bhyve("1");
    let lines = r.expect_labr(&["ids 0x131f 0x2000", "driver serial", "uart 4"]);
    let got = r.result("l1_got").unwrap_or_default();
    assert!(
        got.starts_with("hello from L2 on ttyS"),
        "L1 read {got:?}\n{}",
        r.explain()
    );
    eprintln!("8250_pci: L1 read {got:?} and L2 read the echo");
    assert!(
        lines.contains(&format!("got echo: {got}")),
        "L2 did not read L1's echo: {lines:?}\n{}",
        r.explain()
    );
    let p = r.pci_irqs("0000:00:05.0");
    assert!(p.msi_modes.is_empty() && p.total() > 0, "{p:?}");
}
