//! Linux's own virtio_net on our virtio-net, in the real-OS lab (L2
//! under our bhyve inside L1; see crates/lab): the tap bhyve creates in
//! L1 gets an address there, and L2 pings it — small frames, and frames
//! larger than 1500 bytes when `mtu=9000` is configured. L2 also reports
//! the MAC (bhyve's default derivation, or `mac=`) and MTU it sees.
//! Once with MSI-X, once with `-W` (one MSI vector). Then iperf3 (from
//! Debian's packages, copied into the L2 image with its libraries) runs
//! TCP for 5 s each way against an `iperf3 -s` in L1: both directions
//! must move data; the figures are printed, not judged (at emulator speed
//! they say little about bhyve; see docs/PERFORMANCE.md).
//!
//! And iPXE's DHCP lease (the check tests/ipxe.rs makes on the host, whose
//! KVM cannot run iPXE's protected-mode code): Debian's SeaBIOS runs
//! Debian's iPXE ROM for our virtio-net function, on a tap in L1 where
//! dnsmasq answers.

use std::sync::OnceLock;
use std::time::Duration;

use bhyve_devices::virtio::net::default_mac;
use bhyve_lab::guest::cmdline;
use bhyve_lab::sercon::{garbled_contains, strip_escapes};
use bhyve_lab::{
    lab_dir, shell_quote, GuestImages, JobOutput, Lab, LabOptions, Program, JOB_PRELUDE,
};

const JOB_TIMEOUT: Duration = Duration::from_secs(240);

fn lab() -> &'static Lab {
    static LAB: OnceLock<Result<Lab, String>> = OnceLock::new();
    LAB.get_or_init(|| Lab::boot(&LabOptions::default()).map_err(|e| e.to_string()))
        .as_ref()
        .unwrap_or_else(|e| panic!("the lab did not start: {e}"))
}

fn images() -> &'static GuestImages {
    static IMAGES: OnceLock<Result<GuestImages, String>> = OnceLock::new();
    IMAGES
        .get_or_init(|| {
            GuestImages::prepare_with(
                &lab_dir(),
                &["virtio_pci", "virtio_net"],
                &[Program::Iperf3],
            )
            .map_err(|e| e.to_string())
        })
        .as_ref()
        .unwrap_or_else(|e| panic!("the guest images could not be built: {e}"))
}

/// L2: every interface's MAC and MTU, pings to L1's end of the tap, then
/// iperf3 to L1 (`up`) and back (`down`, `-R`).
const GUEST: &str = r#"
for d in /sys/class/net/eth*; do echo "LABR net ${d##*/} $(cat $d/address) $(cat $d/mtu)"; done
ip link set eth0 up
ip addr add 10.77.1.2/24 dev eth0
ping -c 3 -W 5 10.77.1.1 >/dev/null 2>&1 && echo "LABR ping ok" || echo "LABR ping failed"
ping -c 3 -W 5 -s 8000 10.77.1.1 >/dev/null 2>&1 && echo "LABR bigping ok" || echo "LABR bigping failed"
for dir in up down; do
    [ $dir = up ] && rev= || rev=-R
    iperf3 -c 10.77.1.1 -t 5 -f m $rev >/tmp/iperf.out 2>&1
    echo "LABR iperf $dir status $?"
    grep -E 'sender|receiver|error' /tmp/iperf.out | sed "s/^/LABR iperf $dir /"
done
echo "LABR done"
"#;

struct Run {
    out: JobOutput,
    console: String,
}

impl Run {
    fn lines(&self) -> Vec<String> {
        self.console
            .lines()
            .filter_map(|l| l.trim_end_matches('\r').split_once("LABR "))
            .map(|(_, v)| v.trim_end().to_owned())
            .collect()
    }

    fn explain(&self) -> String {
        let tail: Vec<&str> = self.console.lines().collect();
        format!(
            "--- job output:\n{}\n--- guest console (last lines):\n{}",
            self.out.output,
            tail[tail.len().saturating_sub(40)..].join("\n")
        )
    }
}

/// Runs L2 with `-s 3,virtio-net,tap0<conf>` (plus `flags`); L1 gives the
/// tap 10.77.1.1/24 and `l1_mtu` as soon as bhyve has created it.
fn run(flags: &str, conf: &str, l1_mtu: u32) -> Run {
    let img = images();
    let vars = [
        ("BHYVE", env!("CARGO_BIN_EXE_bhyve").to_string()),
        ("BZIMAGE", img.bzimage.display().to_string()),
        ("INITRD", img.initramfs.display().to_string()),
        ("CMDLINE", cmdline(GUEST, "lab.end=poweroff").unwrap()),
    ];
    let mut script = String::from(JOB_PRELUDE);
    for (k, v) in vars {
        script.push_str(&format!("{k}={}\n", shell_quote(&v)));
    }
    script.push_str(&format!(
        r#"
(
    i=0
    while [ ! -e /sys/class/net/tap0 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
    ip addr add 10.77.1.1/24 dev tap0 && ip link set tap0 mtu {l1_mtu} && ip link set tap0 up
) &
iperf3 -s >iperf-server.log 2>&1 &
srv=$!
$BHYVE -A {flags} -c 1 -m 256M -s 0,hostbridge -s 3,virtio-net,tap0{conf} -s 31,lpc -l com1,stdio \
    -o boot.kernel="$BZIMAGE" -o boot.initrd="$INITRD" -o boot.cmdline="$CMDLINE" vm-net \
    >console.log 2>bhyve.err </dev/null
result bhyve $?
kill $srv
cat bhyve.err
"#
    ));
    job(&script)
}

/// Runs `script` in L1; the console is what it left in `console.log`.
fn job(script: &str) -> Run {
    let out = lab().run(script, JOB_TIMEOUT).unwrap();
    let console = std::fs::read(out.dir.join("console.log"))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let r = Run { out, console };
    assert!(!r.out.timed_out, "the job timed out\n{}", r.explain());
    assert!(
        !r.console.contains("Kernel panic"),
        "the guest panicked\n{}",
        r.explain()
    );
    r
}

/// Checks both iperf3 directions completed, and prints their figures
/// (`up`: L2 → L1, `down`: L1 → L2) as the receiver measured them.
fn report_iperf(r: &Run, what: &str) {
    let lines = r.lines();
    for dir in ["up", "down"] {
        let status = format!("iperf {dir} status 0");
        assert!(
            lines.contains(&status),
            "{status}: {lines:?}\n{}",
            r.explain()
        );
        let rate = lines
            .iter()
            .filter(|l| l.starts_with(&format!("iperf {dir} ")) && l.ends_with("receiver"))
            .find_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let at = w.iter().position(|x| *x == "Mbits/sec")?;
                w[at - 1].parse::<f64>().ok()
            })
            .unwrap_or_else(|| panic!("no iperf3 {dir} receiver line: {lines:?}\n{}", r.explain()));
        assert!(rate > 0.0, "iperf3 {dir}: {rate} Mbit/s");
        eprintln!("iperf3 over virtio-net ({what}), {dir}: {rate} Mbit/s");
    }
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

#[test]
fn linux_virtio_net_pings_l1_with_msix_and_mtu_9000() {
    let r = run("", ",mtu=9000", 9000);
    let lines = r.lines();
    let want = format!("net eth0 {} 9000", mac_text(default_mac(3, 0, "vm-net")));
    assert!(
        lines.contains(&want),
        "want {want:?}: {lines:?}\n{}",
        r.explain()
    );
    for l in ["ping ok", "bigping ok", "done"] {
        assert!(
            lines.iter().any(|x| x == l),
            "{l}: {lines:?}\n{}",
            r.explain()
        );
    }
    report_iperf(&r, "MSI-X, mtu 9000");
}

#[test]
fn linux_virtio_net_pings_l1_with_msi_and_a_configured_mac() {
    let r = run("-W", ",mac=02:be:fa:76:45:01", 1500);
    let lines = r.lines();
    let want = "net eth0 02:be:fa:76:45:01 1500".to_string();
    assert!(
        lines.contains(&want),
        "want {want:?}: {lines:?}\n{}",
        r.explain()
    );
    assert!(
        lines.iter().any(|x| x == "ping ok"),
        "{lines:?}\n{}",
        r.explain()
    );
    report_iperf(&r, "-W, mtu 1500");
}

/// The iPXE DHCP check's VM name (the default MAC derives from it).
const IPXE_VM: &str = "vm-ipxe";

/// Boots Debian's SeaBIOS on our bhyve in L1 with `-s 3,DEVICE,tap1`,
/// `rom` (an iPXE ROM from `ipxe-qemu`) given to SeaBIOS as the fw_cfg
/// file `rom_name` (`pciVVVV,DDDD.rom`: SeaBIOS's per-device option ROM
/// lookup), with dnsmasq serving 10.77.2.0/24 on the tap's L1 side.
/// Waits for the lease for bhyve's default MAC of slot 3 and checks
/// iPXE's own log on COM1 (SeaBIOS's `etc/sercon-port` mirrors its screen
/// there): the ROM ran for 00:03.0, "Configuring (net0 …)" ended "ok" (escape sequences stripped)
/// and iPXE reports the leased address. Returns that address.
fn ipxe_dhcp_lease(device: &str, rom: &str, rom_name: &str) -> String {
    const BIOS: &str = "/usr/share/seabios/bios.bin";
    for f in [BIOS, rom] {
        assert!(
            std::path::Path::new(f).exists(),
            "{f} is missing: apt-get install seabios ipxe-qemu (.ci/run does)"
        );
    }
    let mac = default_mac(3, 0, IPXE_VM);
    let mac = mac_text(mac);
    let mut script = String::from(JOB_PRELUDE);
    for (k, v) in [
        ("BHYVE", env!("CARGO_BIN_EXE_bhyve")),
        ("BIOS", BIOS),
        ("ROM", rom),
        ("ROMNAME", rom_name),
        ("DEVICE", device),
        ("MAC", &mac),
        ("VM", IPXE_VM),
    ] {
        script.push_str(&format!("{k}={}\n", shell_quote(v)));
    }
    script.push_str(
        r#"
ip tuntap add dev tap1 mode tap
ip addr add 10.77.2.1/24 dev tap1
ip link set tap1 up
leases=$TMPDIR/leases-$$
dnsmasq --no-daemon --conf-file=/dev/null --port=0 --user=root --pid-file= \
    --interface=tap1 --bind-interfaces --dhcp-range=10.77.2.50,10.77.2.60,1h \
    --dhcp-leasefile=$leases --log-facility=$PWD/dnsmasq.log --log-dhcp \
    >/dev/null 2>&1 &
dns=$!
printf '\370\003' >sercon-port
$BHYVE -A -c 1 -m 256M -s 0,hostbridge -o pci.0.0.0.pcireg.vendor=0x8086 \
    -o pci.0.0.0.pcireg.device=0x1237 -s 3,$DEVICE,tap1 -s 31,lpc -o pm.base=0x600 \
    -l bootrom,$BIOS,fwcfg=qemu -l com1,stdio \
    -o fwcfg.user.0.name=etc/sercon-port -o fwcfg.user.0.file=$PWD/sercon-port \
    -o fwcfg.user.1.name=$ROMNAME -o fwcfg.user.1.file=$ROM $VM \
    >console.log 2>bhyve.err </dev/null &
pid=$!
for i in $(seq 1800); do
    grep -q "$MAC" $leases 2>/dev/null && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
done
result lease "$(grep "$MAC" $leases 2>/dev/null | cut -d' ' -f2,3)"
# iPXE prints the address once it has configured net0, then finds
# nothing to boot and SeaBIOS goes on with the next device (its "Booting
# from ROM" came before iPXE). Waiting for that, not for the address:
# sercon garbles text (see garbled_contains); if this one is garbled, the
# wait only ends late.
wait_for console.log 'from Floppy\|from Hard Disk\|No bootable' 60
kill -KILL $pid $dns
wait $pid
ip link del tap1
cat bhyve.err dnsmasq.log
"#,
    );
    let r = job(&script);
    let lease = r
        .out
        .output
        .lines()
        .find_map(|l| l.strip_prefix("RESULT lease="))
        .unwrap_or_default()
        .to_string();
    let ip = lease
        .strip_prefix(&format!("{mac} "))
        .filter(|ip| ip.starts_with("10.77.2."))
        .unwrap_or_else(|| panic!("no DHCP lease for {mac}: {lease:?}\n{}", r.explain()))
        .to_string();
    // What iPXE printed, through SeaBIOS's serial console (sercon): see
    // `garbled_contains`. The MAC iPXE configured is the lease's (dnsmasq
    // saw it in its DHCP).
    let com1 = strip_escapes(&r.console.replace('\r', ""));
    for want in ["iPXE (PCI 00:03.0)".to_string(), format!("net0: {ip}/")] {
        assert!(
            com1.lines().any(|l| garbled_contains(l, &want)),
            "COM1 lacks {want:?}\n{}",
            r.explain()
        );
    }
    assert!(
        com1.lines()
            .any(|l| garbled_contains(l, "(net0 ") && l.trim_end().ends_with("ok")),
        "no \"Configuring (net0 …) ok\" line from iPXE\n{}",
        r.explain()
    );
    ip
}

/// iPXE's virtio-net driver (`pxe-virtio.rom`) gets a DHCP lease over our
/// virtio-net, under real KVM semantics in L1.
#[test]
fn ipxe_virtio_net_gets_a_dhcp_lease() {
    let ip = ipxe_dhcp_lease(
        "virtio-net",
        "/usr/lib/ipxe/qemu/pxe-virtio.rom",
        "pci1af4,1000.rom",
    );
    eprintln!("iPXE leased {ip} over virtio-net in the lab");
}

/// iPXE's e1000 driver (`pxe-e1000.rom`, run by SeaBIOS from the fw_cfg
/// file named after our 82545EM's ID) gets a DHCP lease over our e1000.
#[test]
fn ipxe_e1000_gets_a_dhcp_lease() {
    let ip = ipxe_dhcp_lease(
        "e1000",
        "/usr/lib/ipxe/qemu/pxe-e1000.rom",
        "pci8086,100f.rom",
    );
    eprintln!("iPXE leased {ip} over e1000 in the lab");
}
