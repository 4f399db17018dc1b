//! The `virtio_rnd` test guest on real hardware virtualization: our
//! bhyve inside the lab's L1 (KVM on emulated AMD-V, see crates/lab)
//! with two virtio-rnd functions, both transports, MSI-X, MSI (`-W`) and
//! INTx. Unlike this machine's KVM (tests/bhyve_virtio.rs), no handler
//! run may find ISR 0: one INTx delivery per assertion.

use std::time::Duration;

use bhyve_lab::{shell_quote, Lab, LabOptions, JOB_PRELUDE};

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
    let lab = Lab::boot(&LabOptions::default()).unwrap_or_else(|e| panic!("the lab: {e}"));
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
