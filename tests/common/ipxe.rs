//! A NIC judged by a driver nobody here wrote: Debian's SeaBIOS runs
//! Debian's iPXE ROM for the NIC in slot 3 (from a fw_cfg file named as
//! SeaBIOS's per-device ROM lookup wants it), and iPXE asks for a DHCP
//! lease through our tap; dnsmasq answers on the tap's side, all in a
//! network namespace the test creates (nothing touches the host's
//! network).
//!
//! On kvm_pvm (this project's development machines) iPXE's
//! protected-mode `iret` is an emulation failure before DHCP; there the
//! run checks everything up to that point and says so; with hardware
//! virtualization it requires the lease.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use bhyve_devices::virtio::net::default_mac;
use bhyve_lab::sercon::{garbled_contains, strip_escapes};

use super::net::{is_root, mac_text, Netns};
use super::seabios::{seabios_args, BIOS};
use super::vm::Running;
use super::{Scratch, BHYVE};

/// One NIC under iPXE.
pub struct IpxeCase<'a> {
    /// Scratch directory and namespace tag.
    pub tag: &'a str,
    /// The `-s 3,<device>,tap0` emulation.
    pub device: &'a str,
    /// iPXE's ROM for it, and the fw_cfg name SeaBIOS looks it up by.
    pub rom: &'a str,
    pub rom_name: &'a str,
    pub vm: &'a str,
}

/// What a run that got its lease saw.
pub struct Lease {
    pub ip: String,
    pub mac_text: String,
    /// COM1, where SeaBIOS mirrors its console and so iPXE's.
    pub console: String,
    /// COM1, bhyve's stderr and dnsmasq's log, for failure messages.
    pub report: String,
}

/// Kills a helper process before its namespace goes.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `c` under SeaBIOS + iPXE; the lease, or None where kvm_pvm
/// stopped iPXE before DHCP (said on stderr). Panics on any other failure.
pub fn ipxe_dhcp(c: &IpxeCase) -> Option<Lease> {
    assert!(
        is_root(),
        "this test creates a network namespace: run it as root"
    );
    for f in [BIOS, c.rom] {
        assert!(
            Path::new(f).exists(),
            "{f} is missing: apt-get install seabios ipxe-qemu (.ci/run does)"
        );
    }
    let s = Scratch::new(c.tag);
    // Dropped in reverse: bhyve and dnsmasq go before the namespace.
    let ns = Netns::new(c.tag);
    ns.exec(&["ip", "addr", "add", "10.77.0.1/24", "dev", "tap0"]);
    let leases = s.dir.join("leases");
    let dnslog = s.dir.join("dnsmasq.log");
    let _dnsmasq = Reaped(
        ns.cmd(&[
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=tap0",
            "--bind-interfaces",
            "--dhcp-range=10.77.0.50,10.77.0.60,1h",
            &format!("--dhcp-leasefile={}", leases.display()),
            &format!("--log-facility={}", dnslog.display()),
            "--log-dhcp",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq (apt-get install dnsmasq-base)"),
    );

    let sercon = s.file("sercon-port", &0x3f8u16.to_le_bytes());
    let debugcon = s.dir.join("seabios.log");
    let mac_text = mac_text(&default_mac(3, 0, c.vm));
    let mut bhyve = ns.cmd(&[BHYVE]);
    bhyve
        .args(["-A", "-c", "1", "-m", "256M"])
        .args(seabios_args(
            BIOS,
            &[format!("3,{},tap0", c.device)],
            &debugcon,
        ))
        .args([
            "-l",
            "com1,stdio",
            "-o",
            "fwcfg.user.0.name=etc/sercon-port",
            "-o",
            &format!("fwcfg.user.0.file={}", sercon.display()),
            // `-f` cannot carry the ROM name's comma; the tree can.
            "-o",
            &format!("fwcfg.user.1.name={}", c.rom_name),
            "-o",
            &format!("fwcfg.user.1.file={}", c.rom),
            c.vm,
        ])
        .env("BHYVE_RUNDIR", s.rundir());
    let mut vm = Running::spawn(bhyve);

    let start = Instant::now();
    let lease = loop {
        let l = std::fs::read_to_string(&leases).unwrap_or_default();
        if let Some(line) = l.lines().find(|l| l.contains(&mac_text)) {
            break Some(line.to_owned());
        }
        let exited = vm.child.try_wait().unwrap().is_some();
        if exited || start.elapsed() > Duration::from_secs(120) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let exited = vm.child.try_wait().unwrap();
    if exited.is_some() {
        std::thread::sleep(Duration::from_millis(300)); // readers catch up
    }
    let console = vm.stdout();
    let stderr = vm.stderr();
    let report = format!(
        "COM1:\n{console}\nbhyve stderr:\n{stderr}\ndnsmasq:\n{}",
        std::fs::read_to_string(&dnslog).unwrap_or_default()
    );
    // Through SeaBIOS's sercon, which can garble text (see the module).
    let text = strip_escapes(&console.replace('\r', ""));
    let printed = |want: &str| text.lines().any(|l| garbled_contains(l, want));
    assert!(
        printed("iPXE (PCI 00:03.0)"),
        "SeaBIOS did not run the iPXE ROM for 00:03.0\n{report}"
    );
    assert!(
        printed("iPXE initialising devices...ok"),
        "iPXE did not initialise\n{report}"
    );
    match lease {
        Some(line) => {
            // "<expiry> <mac> <ip> <host> <client-id>"
            let ip = line.split_whitespace().nth(2).unwrap_or("").to_owned();
            assert!(ip.starts_with("10.77.0."), "{line}\n{report}");
            eprintln!("iPXE leased {ip} for {mac_text} over {}", c.device);
            Some(Lease {
                ip,
                mac_text,
                console,
                report,
            })
        }
        None if exited.is_some()
            && Path::new("/sys/module/kvm_pvm").exists()
            && stderr.contains("KVM internal error") =>
        {
            eprintln!(
                "kvm_pvm: its CPL0 emulator stopped iPXE before DHCP (checked up to \
                 iPXE's device initialisation; the lease needs hardware virtualization)\n{stderr}"
            );
            None
        }
        None => panic!("no DHCP lease for {mac_text} within 120 s\n{report}"),
    }
}
