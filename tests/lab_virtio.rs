//! Virtio devices judged by drivers nobody here wrote, on real hardware
//! virtualization: our bhyve inside the lab's L1 (KVM on emulated AMD-V,
//! see crates/lab). Debian's Linux (L2) with its own virtio_blk,
//! virtio_scsi, virtio_console, v9fs and virtio_input drivers, each with
//! MSI-X and again with `-W`; virtio-input passes a real evdev device of
//! L1 (a uinput keyboard) through. And the `virtio_rnd` test guest with
//! two virtio-rnd functions, both transports, MSI-X, MSI (`-W`) and INTx:
//! unlike this machine's KVM (tests/bhyve_virtio.rs), no handler run may
//! find ISR 0, one INTx delivery per assertion.
//!
//! One L1 boot serves every test of this file (virtio-net has its own
//! file, tests/lab_net.rs).

mod lab_common;

use std::sync::OnceLock;
use std::time::Duration;

use bhyve_lab::{shell_quote, GuestImages, PciIrqs, JOB_PRELUDE};
use lab_common::*;

/// How a virtio function signals: bhyve's default MSI-X, or one MSI
/// vector with `-W` (`virtio_msix=false`). The virtio device tests run
/// once each way.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Irq {
    MsiX,
    Msi,
}

impl Irq {
    /// The job's `$W`: what bhyve's command line gets.
    fn vars(self) -> &'static str {
        match self {
            Irq::MsiX => "W=\n",
            Irq::Msi => "W=-W\n",
        }
    }

    /// Runs `job` with `$W` set and L2 (images `img`) running `script`,
    /// then powering off.
    fn run(self, img: &GuestImages, script: &str, job: &str) -> Run {
        run_on(
            img,
            script,
            "lab.end=poweroff",
            &(self.vars().to_owned() + job),
        )
    }

    /// Checks the guest's `lab-pci-irqs BDF` line (run after the device's
    /// I/O): with MSI-X the function has an MSI-X capability and no MSI
    /// one, and Linux's virtio_pci drives it through MSI-X vectors that
    /// counted interrupts. With `-W` it has one MSI capability and no
    /// MSI-X: Linux's virtio_pci only knows MSI-X (`vp_find_vqs_msix`
    /// asks for PCI_IRQ_MSIX) and falls back to INTx, so the interrupts
    /// arrive on an I/O APIC line and no MSI vector is enabled (the MSI
    /// delivery itself is checked by the `virtio_rnd` guest,
    /// tests/lab_virtio.rs).
    fn check(self, r: &Run, bdf: &str) {
        let p = r.pci_irqs(bdf);
        let has = |c| p.caps.contains(&c);
        match self {
            Irq::MsiX => {
                assert!(has(PciIrqs::MSIX) && !has(PciIrqs::MSI), "{p:?}");
                assert!(
                    !p.msi_modes.is_empty() && p.msi_modes.iter().all(|m| m == "msix"),
                    "{p:?}\n{}",
                    r.explain()
                );
                assert!(
                    p.irqs.iter().all(|(c, _)| c.starts_with("PCI-MSI")),
                    "{p:?}"
                );
            }
            Irq::Msi => {
                assert!(has(PciIrqs::MSI) && !has(PciIrqs::MSIX), "{p:?}");
                assert!(p.msi_modes.is_empty(), "{p:?}\n{}", r.explain());
                assert!(
                    p.irqs.len() == 1 && p.irqs[0].0 == "IO-APIC",
                    "{p:?}\n{}",
                    r.explain()
                );
            }
        }
        assert!(
            p.total() > 0,
            "no interrupt counted: {p:?}\n{}",
            r.explain()
        );
    }
}

/// The two tests of a virtio device: `$msix` runs `$body` with bhyve's
/// default MSI-X, `$msi` with `-W` (one MSI vector).
macro_rules! both_irqs {
    ($msix:ident, $msi:ident, $body:ident) => {
        #[test]
        fn $msix() {
            $body(Irq::MsiX);
        }

        #[test]
        fn $msi() {
            $body(Irq::Msi);
        }
    };
}

/// Linux's virtio_blk on our virtio-blk over a file in L1: identity
/// (capacity, serial, topology, discard limits), a pattern written with
/// fsync and read back after dropping the page cache, both checked by
/// hash against the host file, and `blkdiscard` punching a hole in it.
fn linux_virtio_blk(irq: Irq) {
    let script = format!(
        r#"
echo "LABR size $(cat /sys/block/vda/size)"
echo "LABR serial $(cat /sys/block/vda/serial)"
echo "LABR pbs $(cat /sys/block/vda/queue/physical_block_size)"
echo "LABR discard $(cat /sys/block/vda/queue/discard_max_bytes)"
{}
lab-pci-irqs 0000:00:04.0
echo "LABR done"
"#,
        disk::guest_io("/dev/vda", "bhyve-virtio-blk")
    );
    let boot = bhyve_l2(
        "$W -c 1 -s 4,virtio-blk,$img,sectorsize=512/4096,ser=LABDISK",
        "vm-blk",
    );
    let job = disk::job("blk", "bhyve-virtio-blk", "", &boot, "");
    let r = irq.run(virtio_images(), &script, &job);
    r.expect_console("LABR done");
    r.expect_bhyve("1");
    irq.check(&r, "0000:00:04.0");
    disk::expect_io(
        &r,
        &[
            "size 32768",
            "serial LABDISK",
            "pbs 4096",
            "discard 16777216",
        ],
    );
}

both_irqs!(
    linux_virtio_blk_writes_reads_and_discards,
    linux_virtio_blk_with_w,
    linux_virtio_blk
);

/// Linux's virtio_scsi and sd on our virtio-scsi over a file in L1
/// (`-s 4,virtio-scsi,FILE,ser=`): the disk appears as sda with our
/// INQUIRY identity, capacity, serial (VPD 0x80), write-back cache and
/// UNMAP provisioning; a pattern written with fsync and read back after
/// dropping the page cache matches the host file by hash, and
/// `blkdiscard` (UNMAP) punches a hole in it. `/dev/cam/ctl` paths are
/// one error line, status 4.
fn linux_virtio_scsi(irq: Irq) {
    let script = format!(
        r#"
i=0; while [ ! -e /sys/block/sda ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done
echo "LABR size $(cat /sys/block/sda/size)"
echo "LABR vendor $(cat /sys/block/sda/device/vendor)"
echo "LABR model $(cat /sys/block/sda/device/model)"
echo "LABR serial $(tail -c +5 /sys/block/sda/device/vpd_pg80)"
echo "LABR cache $(cat /sys/class/scsi_disk/*/cache_type)"
echo "LABR provisioning $(cat /sys/class/scsi_disk/*/provisioning_mode)"
echo "LABR discard $(cat /sys/block/sda/queue/discard_max_bytes)"
echo "LABR rotational $(cat /sys/block/sda/queue/rotational)"
{}
lab-pci-irqs 0000:00:04.0
echo "LABR done"
"#,
        disk::guest_io("/dev/sda", "bhyve-virtio-scsi")
    );
    let boot = bhyve_l2("$W -c 1 -s 4,virtio-scsi,$img,ser=LABSCSI", "vm-scsi");
    let ctl = r#"$BHYVE -s 4,virtio-scsi,/dev/cam/ctl0 -s 31,lpc vm-ctl 2>ctl.err </dev/null
result ctl_status $?
result ctl_lines $(wc -l <ctl.err)
cat ctl.err
"#;
    let job = disk::job("scsi", "bhyve-virtio-scsi", "", &boot, ctl);
    let r = irq.run(virtio_images(), &script, &job);
    r.expect_console("LABR done");
    r.expect_bhyve("1");
    irq.check(&r, "0000:00:04.0");
    r.expect("ctl_status", "4");
    r.expect("ctl_lines", "1");
    disk::expect_io(
        &r,
        &[
            "size 32768",
            "vendor BHYVE",
            "model VIRTUAL DISK",
            "serial LABSCSI",
            "cache write back",
            "provisioning unmap",
            "discard 16777216",
            "rotational 0",
        ],
    );
}

both_irqs!(
    linux_virtio_scsi_disk_writes_reads_and_unmaps,
    linux_virtio_scsi_with_w,
    linux_virtio_scsi
);

/// virtio-console with two named ports (`-s 4,virtio-console,NAME=SOCK,…`):
/// Linux's virtio_console (MULTIPORT) creates /dev/vportNpM for both with
/// their names in /sys/class/virtio-ports/*/name; on the second port
/// (queues 4/5) a line goes from the guest to a client of bhyve's UNIX
/// socket in L1 and a line back. The guest's write blocks until a client
/// connects (Linux waits for PORT_OPEN), so the order is fixed.
fn virtio_console(irq: Irq) {
    let script = r#"
for p in /sys/class/virtio-ports/*; do echo "LABR port ${p##*/} $(cat $p/name)"; done
dev=
for p in /sys/class/virtio-ports/*; do [ "$(cat $p/name)" = org.bhyve.test ] && dev=/dev/${p##*/}; done
echo "LABR dev ${dev:-none}"
[ -n "$dev" ] || exit 1
exec 3<>"$dev"
echo LAB-VPORT-READY
echo "guest-says-hi" >&3
read -r line <&3
echo "LABR got $line"
lab-pci-irqs 0000:00:04.0
"#;
    let job = format!(
        r#"
dir=$(mktemp -d)
{} &
pid=$!
if wait_for console.log LAB-VPORT-READY 240; then
    /usr/bin/python3 - "$dir/p2.sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(60)
s.connect(sys.argv[1])
buf = b""
while b"\n" not in buf:
    d = s.recv(256)
    if not d:
        break
    buf += d
print("RESULT fromguest=" + buf.decode(errors="replace").strip())
s.sendall(b"host-says-hello\n")
# Stay connected until the guest has read it (bhyve ends the run).
s.settimeout(120)
try:
    s.recv(1)
except OSError:
    pass
PY
fi
wait_bhyve $pid
result sockets_left "$(ls $dir | wc -l)"
rm -rf "$dir"
cat bhyve.err
"#,
        bhyve_l2(
            "$W -c 1 -s 4,virtio-console,port1=$dir/p1.sock,org.bhyve.test=$dir/p2.sock",
            "vm-vtcon"
        )
    );
    let r = irq.run(virtio_images(), script, &job);
    r.expect_console(&marker(1));
    r.expect_console("LABR port vport");
    assert!(
        r.console.contains(" port1\r") || r.console.contains(" port1\n"),
        "port1 not named\n{}",
        r.explain()
    );
    r.expect_console("LABR dev /dev/vport");
    r.expect("fromguest", "guest-says-hi");
    r.expect_console("LABR got host-says-hello");
    r.expect_bhyve("1");
    // As bhyve(8) says of its own: the sockets stay after bhyve exits.
    r.expect("sockets_left", "2");
    irq.check(&r, "0000:00:04.0");
}

both_irqs!(
    virtio_console_ports_reach_unix_sockets,
    virtio_console_with_w,
    virtio_console
);

/// Images for the virtio-9p test: Debian's generic kernel (the cloud
/// one has no 9P) with the transport, 9P over virtio and v9fs.
fn p9_images() -> &'static GuestImages {
    static IMAGES: OnceLock<Result<GuestImages, String>> = OnceLock::new();
    generic_kernel_images(&IMAGES, &["virtio_pci", "9pnet_virtio", "9p"], &[])
}

/// virtio-9p with Linux's v9fs: a read-write share (read, write, mkdir,
/// rename, symlinks inside) and a read-only one, each mounted with
/// `trans=virtio,version=9p2000.L`; symlinks in the share pointing at
/// the host's files outside it resolve in the guest's namespace, never
/// the host's, and nothing outside the share changes.
fn virtio_9p(irq: Irq) {
    let script = r#"
mkdir -p /mnt/rw /mnt/ro
mount -t 9p -o trans=virtio,version=9p2000.L,msize=131072 hostshare /mnt/rw && echo "LABR mount rw ok"
mount -t 9p -o trans=virtio,version=9p2000.L roshare /mnt/ro && echo "LABR mount ro ok"
echo "LABR read $(cat /mnt/rw/hello)"
echo "LABR list $(ls /mnt/rw | tr '\n' ' ')"
echo written-by-guest > /mnt/rw/fromguest && echo "LABR write ok"
dd if=/dev/zero bs=1k count=300 2>/dev/null | tr '\0' 'x' > /mnt/rw/big
echo "LABR big $(wc -c < /mnt/rw/big)"
mkdir /mnt/rw/newdir && echo x > /mnt/rw/newdir/f && mv /mnt/rw/newdir/f /mnt/rw/newdir/g && echo "LABR mkdir ok"
ln -s hello /mnt/rw/inlink && echo "LABR inlink $(cat /mnt/rw/inlink)"
cat /mnt/rw/abs/secret 2>/dev/null && echo "LABR ESCAPED abs"
cat /mnt/rw/rel/secret 2>/dev/null && echo "LABR ESCAPED rel"
cat /mnt/rw/../secret 2>/dev/null && echo "LABR ESCAPED dotdot"
echo "LABR dotdot $(ls /mnt/rw/.. | tr '\n' ' ')"
echo "LABR absreadlink $(readlink /mnt/rw/abs)"
echo y > /mnt/ro/nope 2>/dev/null || echo "LABR ro write refused"
mkdir /mnt/ro/nope 2>/dev/null || echo "LABR ro mkdir refused"
echo "LABR ro read $(cat /mnt/ro/hello)"
umount /mnt/rw && umount /mnt/ro && echo "LABR umount ok"
lab-pci-irqs 0000:00:03.0
echo "LABR done"
"#;
    let job = format!(
        r#"
top=$(mktemp -d)
mkdir "$top/share" "$top/outside"
echo hello-from-host > "$top/share/hello"
echo SECRET > "$top/outside/secret"
echo SECRET > "$top/secret"
ln -s "$top/outside" "$top/share/abs"
ln -s ../outside "$top/share/rel"
{}
result bhyve $?
result fromguest "$(cat "$top/share/fromguest")"
result big "$(wc -c < "$top/share/big")"
result moved "$(cat "$top/share/newdir/g")"
result outside "$(ls "$top/outside" | tr '\n' ' ')$(cat "$top/outside/secret" "$top/secret" | tr '\n' ' ')"
result top "$(ls "$top" | tr '\n' ' ')"
result nope "$(ls "$top/share/nope" 2>&1 >/dev/null | wc -l)"
cat bhyve.err
rm -rf "$top"
"#,
        bhyve_l2(
            r#"$W -c 1 -s 3,virtio-9p,hostshare="$top/share" -s 4,virtio-9p,roshare="$top/share",ro"#,
            "vm-9p"
        )
    );
    let r = irq.run(p9_images(), script, &job);
    r.expect_console(&marker(1));
    r.expect_console("LABR done");
    for l in [
        "LABR mount rw ok",
        "LABR mount ro ok",
        "LABR read hello-from-host",
        "LABR write ok",
        "LABR big 307200",
        "LABR mkdir ok",
        "LABR inlink hello-from-host",
        "LABR ro write refused",
        "LABR ro mkdir refused",
        "LABR ro read hello-from-host",
        "LABR umount ok",
    ] {
        r.expect_console(l);
    }
    assert!(!r.console.contains("LABR ESCAPED"), "{}", r.explain());
    r.expect("fromguest", "written-by-guest");
    r.expect("big", "307200");
    r.expect("moved", "x");
    r.expect("outside", "secret SECRET SECRET ");
    r.expect("top", "outside secret share ");
    r.expect("nope", "1");
    r.expect_bhyve("1");
    irq.check(&r, "0000:00:03.0");
}

both_irqs!(virtio_9p_share_with_linux, virtio_9p_with_w, virtio_9p);

/// Linux key codes the uinput keyboard presses: B, H, Y, V, E.
const KEYS: [u16; 5] = [48, 35, 21, 47, 18];

/// virtio-input with a real evdev device: in L1, `lab-uinput-keys`
/// (crates/lab/src/uinput_keys.c) creates a keyboard through uinput;
/// bhyve passes its /dev/input/eventN through (`-s 4,virtio-input,PATH`);
/// in L2, Linux's virtio_input offers it as an input device with the
/// host device's name and IDs (ID_NAME, ID_DEVIDS from EVIOCGNAME and
/// EVIOCGID), the guest opens it and only then are the keys pressed in L1:
/// every press arrives, in order, as an EV_KEY event.
fn virtio_input(irq: Irq) {
    let tool = bhyve_lab::tools::uinput_keys(&lab().work_dir().join("tools")).unwrap();
    let script = r#"
dev= sys=
for e in /sys/class/input/event*; do
    [ "$(cat $e/device/name)" = "bhyve-lab keys" ] && dev=/dev/input/${e##*/} sys=$e/device
done
echo "LABR input ${dev:-none}"
[ -n "$dev" ] || exit 1
echo "LABR ids $(cat $sys/id/bustype) $(cat $sys/id/vendor) $(cat $sys/id/product)"
exec 3<"$dev"
echo LAB-INPUT-READY
n=0
while [ $n -lt 5 ]; do
    set -- $(dd bs=24 count=1 <&3 2>/dev/null | od -An -tu2 -j16 -N6)
    [ "${1:-}" = 1 ] && [ "${3:-}" = 1 ] && { echo "LABR key $2"; n=$((n + 1)); }
done
lab-pci-irqs 0000:00:04.0
"#;
    let keys: Vec<String> = KEYS.iter().map(u16::to_string).collect();
    let job = format!(
        r#"UINPUT={uinput}
KEYS='{keys}'
trig=$TMPDIR/keys-go-$$
$UINPUT "$trig" $KEYS >uinput.out 2>&1 &
upid=$!
wait_for uinput.out EVDEV 30 || {{ cat uinput.out; exit 1; }}
ev=$(sed -n 's/^EVDEV //p' uinput.out)
result evdev "$ev"
{boot} &
pid=$!
wait_for console.log LAB-INPUT-READY 240 && touch "$trig"
wait_for uinput.out SENT 60 && result sent yes
wait_bhyve $pid
kill $upid
cat bhyve.err uinput.out
"#,
        uinput = shell_quote(&tool.display().to_string()),
        keys = keys.join(" "),
        boot = bhyve_l2(r#"$W -c 1 -s 4,virtio-input,"$ev""#, "vm-input"),
    );
    let r = irq.run(virtio_images(), script, &job);
    assert!(
        r.result("evdev")
            .is_some_and(|e| e.starts_with("/dev/input/event")),
        "{}",
        r.explain()
    );
    r.expect_console(&marker(1));
    r.expect_console("LABR input /dev/input/event");
    // BUS_VIRTUAL, and the IDs lab-uinput-keys gave its device.
    r.expect_console("LABR ids 0006 1af4 4b42");
    r.expect("sent", "yes");
    let got: Vec<String> = r
        .console
        .lines()
        .filter_map(|l| l.trim_end().split_once("LABR key "))
        .map(|(_, k)| k.to_string())
        .collect();
    assert_eq!(got, keys, "{}", r.explain());
    irq.check(&r, "0000:00:04.0");
    r.expect_bhyve("1");
}

both_irqs!(
    linux_virtio_input_gets_host_evdev_keys,
    linux_virtio_input_with_w,
    virtio_input
);

/// (transport, irq, extra bhyve flags) of each run.
const RUNS: &[(&str, &str, &str)] = &[
    ("legacy", "intx", ""),
    ("modern", "intx", ""),
    ("legacy", "msix", ""),
    ("modern", "msix", ""),
    ("legacy", "msi", "-W"),
    ("modern", "msi", "-W"),
    ("modern", "msix-pending", ""),
];

#[test]
fn virtio_rnd_guest_under_real_kvm() {
    let lab = lab();
    let guest = bhyve_testguests::write_guest("virtio_rnd", lab.work_dir()).unwrap();
    let mut script = String::from(JOB_PRELUDE);
    script.push_str(&format!(
        "B={}\nG={}\n",
        shell_quote(env!("CARGO_BIN_EXE_bhyve")),
        shell_quote(&guest.display().to_string())
    ));
    for (t, irq, extra) in RUNS {
        script.push_str(&format!(
            "echo '=== {t} {irq}'\n\
             timeout 120 \"$B\" {extra} -l com1,stdio -l pc-testdev -s 0,hostbridge \
             -s 3,virtio-rnd -s 5,virtio-rnd -o boot.kernel=\"$G\" \
             -o 'boot.cmdline=transport={t} irq={irq}' vm0 </dev/null\n\
             echo \"status $?\"\n"
        ));
    }
    let out = lab.run(&script, Duration::from_secs(600)).unwrap();
    assert!(!out.timed_out, "{}", out.output);
    let sections: Vec<&str> = out.output.split("=== ").skip(1).collect();
    assert_eq!(sections.len(), RUNS.len(), "{}", out.output);
    for (sec, (t, irq, _)) in sections.iter().zip(RUNS) {
        assert!(sec.starts_with(&format!("{t} {irq}\n")), "{sec}");
        let lines: Vec<&str> = sec.lines().collect();
        assert_eq!(lines.last(), Some(&"status 33"), "{t} {irq}:\n{sec}");
        assert!(
            lines.contains(&"virtio_rnd: 0x2 functions passed"),
            "{t} {irq}:\n{sec}"
        );
        assert_eq!(
            lines
                .iter()
                .filter(|l| **l == "virtio_rnd: 0x4 buffers of 0x40 random bytes")
                .count(),
            2,
            "{sec}"
        );
        assert!(
            !sec.contains("intx handler found isr 0"),
            "a second delivery: {sec}"
        );
        if *irq == "intx" {
            for pin in ["0x10", "0x11"] {
                let want = format!("virtio_rnd: intx on pin {pin} isr 0x1 then 0x0");
                assert!(lines.contains(&want.as_str()), "{want}:\n{sec}");
            }
        }
    }
}
