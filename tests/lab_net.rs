//! Linux's own virtio_net on our virtio-net, in the real-OS lab (L2
//! under our bhyve inside L1; see crates/lab): the tap bhyve creates in
//! L1 gets an address there, and L2 pings it — small frames, and frames
//! larger than 1500 bytes when `mtu=9000` is configured. L2 also reports
//! the MAC (bhyve's default derivation, or `mac=`) and MTU it sees.
//! Once with MSI-X, once with `-W` (one MSI vector).
//!
//! iperf3 is not in the lab's busybox images; throughput is not measured
//! here.

use std::sync::OnceLock;
use std::time::Duration;

use bhyve_devices::virtio::net::default_mac;
use bhyve_lab::guest::cmdline;
use bhyve_lab::{lab_dir, shell_quote, GuestImages, JobOutput, Lab, LabOptions, JOB_PRELUDE};

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
            GuestImages::prepare(&lab_dir(), &["virtio_pci", "virtio_net"])
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .unwrap_or_else(|e| panic!("the guest images could not be built: {e}"))
}

/// L2: every interface's MAC and MTU, then pings to L1's end of the tap.
const GUEST: &str = r#"
for d in /sys/class/net/eth*; do echo "LABR net ${d##*/} $(cat $d/address) $(cat $d/mtu)"; done
ip link set eth0 up
ip addr add 10.77.1.2/24 dev eth0
ping -c 3 -W 5 10.77.1.1 >/dev/null 2>&1 && echo "LABR ping ok" || echo "LABR ping failed"
ping -c 3 -W 5 -s 8000 10.77.1.1 >/dev/null 2>&1 && echo "LABR bigping ok" || echo "LABR bigping failed"
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
$BHYVE -A {flags} -c 1 -m 256M -s 0,hostbridge -s 3,virtio-net,tap0{conf} -s 31,lpc -l com1,stdio \
    -o boot.kernel="$BZIMAGE" -o boot.initrd="$INITRD" -o boot.cmdline="$CMDLINE" vm-net \
    >console.log 2>bhyve.err </dev/null
result bhyve $?
cat bhyve.err
"#
    ));
    let out = lab().run(&script, JOB_TIMEOUT).unwrap();
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
}
