//! virtio over PCI seen from a guest driver: the `virtio_rnd` test guest
//! finds every virtio-rnd function (`-s N,virtio-rnd`) on bus 0, drives
//! it through the legacy I/O BAR or the modern capabilities, and takes
//! the queue interrupt in its IDT as MSI-X, MSI (`-W`) or INTx through
//! the I/O APIC pin bhyve routes the function to. The random bytes must
//! arrive in every buffer.

mod common;

use bhyve_testguests::{exit_status, EXIT_BAD_CMDLINE, EXIT_FAIL, PASS_STATUS};
use common::*;

/// One run of the guest.
struct Run {
    status: Option<i32>,
    lines: Vec<String>,
    raw: String,
}

impl Run {
    fn assert_status(&self, status: i32) {
        assert_eq!(self.status, Some(status), "{}", self.raw);
    }

    /// The report without the per-function lines that depend on the
    /// placement (BARs, capabilities, features), checked separately.
    fn outline(&self) -> Vec<&str> {
        self.lines
            .iter()
            .map(String::as_str)
            .filter(|l| {
                ![
                    "bars",
                    "cap ",
                    "legacy features",
                    "modern features",
                    "queue size",
                    "intx handler found isr 0",
                ]
                .iter()
                .any(|p| l.starts_with(&format!("virtio_rnd: {p}")))
            })
            .collect()
    }
}

/// Runs the guest with `-s SLOT,virtio-rnd` for each of `slots`, the
/// extra bhyve `args`, and the guest command line.
fn run(s: &Scratch, slots: &[u8], args: &[&str], cmdline: &str) -> Run {
    let kernel = kernel_opt(&s.guest("virtio_rnd"));
    let cmd = format!("boot.cmdline={cmdline}");
    let devs: Vec<String> = slots.iter().map(|n| format!("{n},virtio-rnd")).collect();
    let mut all = vec!["-l", "com1,stdio", "-l", "pc-testdev", "-s", "0,hostbridge"];
    for d in &devs {
        all.extend(["-s", d.as_str()]);
    }
    all.extend(["-o", &kernel, "-o", &cmd]);
    all.extend_from_slice(args);
    all.push("vm0");
    let o = s.run(&all);
    let out = stdout(&o);
    Run {
        status: o.status.code(),
        lines: out.lines().map(str::to_string).collect(),
        raw: format!("{out}{}", stderr(&o)),
    }
}

/// What a passing run prints around each function (in slot order): the
/// `irq_line` for each, from its slot's index.
fn expected(
    transport: &str,
    irq: &str,
    slots: &[u8],
    irq_line: impl Fn(usize) -> Vec<String>,
) -> Vec<String> {
    let mut v = vec![format!("virtio_rnd: transport {transport} irq {irq}")];
    v.extend(
        slots
            .iter()
            .map(|n| format!("virtio_rnd: function {n:#x} 0x0")),
    );
    v.push("virtio_rnd: ecam agrees with conf1".into());
    for (k, n) in slots.iter().enumerate() {
        v.push(format!("virtio_rnd: driving {n:#x} 0x0"));
        v.push("virtio_rnd: 0x4 buffers of 0x40 random bytes".into());
        v.extend(irq_line(k));
    }
    v.push(format!("virtio_rnd: {:#x} functions passed", slots.len()));
    v
}

/// The capability list and BARs of a transitional virtio function:
/// MSI-X (or MSI with `-W`) then the common, notify, ISR and PCI-config
/// window structures in BAR 4; BAR 0 is I/O, BAR 1 (MSI-X) 32-bit
/// memory, BAR 4 64-bit memory below 4 GiB.
fn check_layout(r: &Run, msix: bool, functions: usize) {
    let caps: Vec<&str> = r
        .lines
        .iter()
        .filter(|l| l.starts_with("virtio_rnd: cap "))
        .map(String::as_str)
        .collect();
    let first = if msix {
        "virtio_rnd: cap 0x11"
    } else {
        "virtio_rnd: cap 0x5"
    };
    let one = [
        first,
        "virtio_rnd: cap 0x9 type 0x1 bar 0x4 off 0x0 len 0x38",
        "virtio_rnd: cap 0x9 type 0x2 bar 0x4 off 0x3000 len 0x4",
        "virtio_rnd: cap 0x9 type 0x3 bar 0x4 off 0x1000 len 0x1",
        "virtio_rnd: cap 0x9 type 0x5 bar 0x0 off 0x0 len 0x0",
    ];
    assert_eq!(caps, one.repeat(functions), "{}", r.raw);
    let bars: Vec<Vec<u64>> = r
        .lines
        .iter()
        .filter_map(|l| l.strip_prefix("virtio_rnd: bars "))
        .map(|b| {
            b.split(' ')
                .map(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).unwrap())
                .collect()
        })
        .collect();
    assert_eq!(bars.len(), functions, "{}", r.raw);
    for b in &bars {
        assert_eq!(b[0] & 3, 1, "BAR 0 is I/O: {b:x?}");
        assert!(b[0] >= 0x2000, "bhyve's I/O window: {b:x?}");
        if msix {
            assert_eq!(b[1] & 0xf, 0, "BAR 1 is 32-bit memory: {b:x?}");
            assert!(b[1] >= 0xc000_0000, "{b:x?}");
        } else {
            assert_eq!(b[1], 0, "no MSI-X BAR with -W: {b:x?}");
        }
        assert_eq!(b[4] & 0xf, 4, "BAR 4 is 64-bit memory: {b:x?}");
        assert_eq!(b[5], 0, "BAR 4 below 4 GiB: {b:x?}");
    }
}

fn check_features(r: &Run, transport: &str) {
    let want = match transport {
        // INDIRECT_DESC and EVENT_IDX; VERSION_1 (bit 32) only through
        // the modern interface.
        "legacy" => "virtio_rnd: legacy features 0x30000000",
        _ => "virtio_rnd: modern features 0x1 0x30000000",
    };
    assert!(r.lines.iter().any(|l| l == want), "{}", r.raw);
    let qs = if transport == "legacy" {
        "virtio_rnd: queue size 0x40"
    } else {
        "virtio_rnd: queue size 0x40 set 0x10"
    };
    assert!(r.lines.iter().any(|l| l == qs), "{}", r.raw);
}

#[test]
fn msix_in_both_transports() {
    let s = Scratch::new("virtio-msix");
    let slots = [3u8, 5];
    for t in ["legacy", "modern"] {
        let r = run(&s, &slots, &[], &format!("transport={t} irq=msix"));
        r.assert_status(PASS_STATUS);
        let want = expected(t, "msix", &slots, |_| {
            vec!["virtio_rnd: msix interrupt on vector 0x30".into()]
        });
        assert_eq!(r.outline(), want, "{}", r.raw);
        check_layout(&r, true, slots.len());
        check_features(&r, t);
    }
}

/// `-W`: one MSI vector instead of MSI-X.
#[test]
fn msi_with_w_in_both_transports() {
    let s = Scratch::new("virtio-msi");
    let slots = [3u8, 5];
    for t in ["legacy", "modern"] {
        let r = run(&s, &slots, &["-W"], &format!("transport={t} irq=msi"));
        r.assert_status(PASS_STATUS);
        let want = expected(t, "msi", &slots, |_| {
            vec!["virtio_rnd: msi interrupt on vector 0x34".into()]
        });
        assert_eq!(r.outline(), want, "{}", r.raw);
        check_layout(&r, false, slots.len());
        check_features(&r, t);
    }
}

/// This machine's KVM (`kvm_pvm`, see docs/TESTBEDS) enters a
/// level-triggered interrupt's handler a second time for one delivery,
/// even though bhyve asserted and lowered the line once (seen in its
/// trace): the guest then finds ISR 0. Real VT-x/AMD-V hosts do not (the
/// lab runs the same guest strictly, tests/lab_virtio.rs).
fn duplicate_delivery_host() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

/// INTx: the k-th function to use INTx (slot order) interrupts on I/O
/// APIC pin 16 + k, as bhyve routes it (and as the DSDT's `_PRT` says,
/// see bhyve_acpi.rs); its ISR reads 1 in the handler, and the read
/// lowers the level: no handler run finds ISR 0 afterwards (a level left
/// up would be delivered again at once and fail the guest), except the
/// one duplicate this machine's KVM adds.
fn intx_run(tag: &str, slots: &[u8], transport: &str, extra: &[&str]) {
    let s = Scratch::new(tag);
    let r = run(&s, slots, extra, &format!("transport={transport} irq=intx"));
    r.assert_status(PASS_STATUS);
    let want = expected(transport, "intx", slots, |k| {
        vec![format!(
            "virtio_rnd: intx on pin {:#x} isr 0x1 then 0x0",
            16 + k
        )]
    });
    assert_eq!(r.outline(), want, "{}", r.raw);
    let ghosts: Vec<&String> = r
        .lines
        .iter()
        .filter(|l| l.starts_with("virtio_rnd: intx handler found isr 0"))
        .collect();
    if duplicate_delivery_host() {
        for g in &ghosts {
            assert!(
                g.contains(": 0x1 times"),
                "more than one duplicate: {}",
                r.raw
            );
        }
    } else {
        assert!(ghosts.is_empty(), "{}", r.raw);
    }
}

#[test]
fn intx_in_both_transports() {
    intx_run("virtio-intx-l", &[3, 5], "legacy", &[]);
    intx_run("virtio-intx-m", &[3, 5], "modern", &[]);
    intx_run("virtio-intx-lw", &[4], "legacy", &["-W"]);
    intx_run("virtio-intx-mw", &[6], "modern", &["-W"]);
}

/// A masked MSI-X vector: the device completes the buffers without
/// interrupting and sets its PBA bit; unmasking delivers it.
#[test]
fn masked_msix_vector_is_pending_then_delivered() {
    let s = Scratch::new("virtio-pending");
    for t in ["legacy", "modern"] {
        let r = run(&s, &[3], &[], &format!("transport={t} irq=msix-pending"));
        r.assert_status(PASS_STATUS);
        let want = [
            format!("virtio_rnd: transport {t} irq msix-pending"),
            "virtio_rnd: function 0x3 0x0".into(),
            "virtio_rnd: ecam agrees with conf1".into(),
            "virtio_rnd: driving 0x3 0x0".into(),
            "virtio_rnd: masked: buffers used, no interrupt, pending bit set".into(),
            "virtio_rnd: 0x4 buffers of 0x40 random bytes".into(),
            "virtio_rnd: msix interrupt on vector 0x30".into(),
            "virtio_rnd: 0x1 functions passed".into(),
        ];
        assert_eq!(r.outline(), want, "{}", r.raw);
    }
}

/// The guest's verdict can fail: a vector that stays masked never
/// interrupts (the wait times out), MSI-X asked of a `-W` function and
/// MSI of an MSI-X one are missing capabilities, no function at all, and
/// a malformed command line.
#[test]
fn guest_reports_failures() {
    let s = Scratch::new("virtio-fail");
    let fail = exit_status(EXIT_FAIL);
    let r = run(&s, &[3], &[], "transport=legacy irq=msix-masked");
    r.assert_status(fail);
    assert_eq!(
        r.outline()[4..],
        [
            "virtio_rnd: masked: buffers used, no interrupt, pending bit set",
            "virtio_rnd: timeout: interrupts 0x0 used 0x4",
        ],
        "{}",
        r.raw
    );
    let r = run(&s, &[3], &["-W"], "transport=modern irq=msix");
    r.assert_status(fail);
    assert_eq!(
        r.lines.last().map(String::as_str),
        Some("virtio_rnd: no MSI-X capability"),
        "{}",
        r.raw
    );
    let r = run(&s, &[3], &[], "transport=modern irq=msi");
    r.assert_status(fail);
    assert_eq!(
        r.lines.last().map(String::as_str),
        Some("virtio_rnd: no MSI capability"),
        "{}",
        r.raw
    );
    let r = run(&s, &[], &[], "transport=legacy irq=msix");
    r.assert_status(fail);
    assert_eq!(
        r.lines.last().map(String::as_str),
        Some("virtio_rnd: no 1af4:1005 function on bus 0"),
        "{}",
        r.raw
    );
    let r = run(&s, &[3], &[], "transport=pci irq=msix");
    r.assert_status(exit_status(EXIT_BAD_CMDLINE));
}
