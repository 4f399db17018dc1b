//! e1000 judged by a driver nobody here wrote: Debian's iPXE ROM for
//! the 82545EM (`ipxe-qemu`'s `pxe-e1000.rom`), run by Debian's SeaBIOS
//! from the fw_cfg file `pci8086,100f.rom`, probes our function (EEPROM,
//! PHY, rings) and asks for a DHCP lease through our tap; dnsmasq answers
//! on the tap's side, in a network namespace the test creates. The MAC
//! iPXE reports must be bhyve's default for slot 3 and the VM name,
//! which iPXE can only have read from our EEPROM/receive address.
//!
//! The namespace and run follow tests/ipxe.rs (virtio-net's iPXE test).
//! Needs root, iproute2 and dnsmasq (.ci/run installs them).
//!
//! On kvm_pvm (this project's development machines) iPXE's protected-mode
//! `iret` is an emulation failure before DHCP; there the test checks
//! everything up to that point and says so; with hardware
//! virtualization it requires the lease.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bhyve_devices::virtio::net::default_mac;
use common::*;

const BIOS: &str = "/usr/share/seabios/bios.bin";
const ROM: &str = "/usr/lib/ipxe/qemu/pxe-e1000.rom";
const VM: &str = "e1000vm";

/// The namespace, its dnsmasq and bhyve; removed whatever happens.
struct Netns {
    name: String,
    children: Vec<Child>,
}

fn sh(args: &[&str]) {
    let st = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(st.success(), "{args:?} failed: {st}");
}

impl Netns {
    fn new() -> Netns {
        let name = format!("bhyve-e1k-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns {
            name,
            children: Vec::new(),
        };
        ns.exec(&["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"]);
        ns.exec(&["ip", "addr", "add", "10.77.0.1/24", "dev", "tap0"]);
        ns.exec(&["ip", "link", "set", "tap0", "up"]);
        ns
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    fn exec(&self, args: &[&str]) {
        let st = self.cmd(args).status().unwrap();
        assert!(st.success(), "{args:?} in {} failed: {st}", self.name);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn ipxe_probes_e1000_and_asks_for_a_lease() {
    assert!(
        is_root(),
        "this test creates a network namespace: run it as root"
    );
    for f in [BIOS, ROM] {
        assert!(
            Path::new(f).exists(),
            "{f} is missing: apt-get install seabios ipxe-qemu (.ci/run does)"
        );
    }
    let s = Scratch::new("e1000-ipxe");
    let mut ns = Netns::new();
    let leases = s.dir.join("leases");
    let dnslog = s.dir.join("dnsmasq.log");
    let dnsmasq = ns
        .cmd(&[
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
        .expect("dnsmasq (apt-get install dnsmasq-base)");
    ns.children.push(dnsmasq);

    // SeaBIOS mirrors its console, and so iPXE's, to COM1.
    let sercon = s.file("sercon-port", &0x3f8u16.to_le_bytes());
    let debugcon = s.dir.join("seabios.log");
    let mac = default_mac(3, 0, VM);
    let mac_text = mac.map(|b| format!("{b:02x}")).join(":");
    let args: Vec<String> = [
        "-A",
        "-c",
        "1",
        "-m",
        "256M",
        "-s",
        "0,hostbridge",
        "-o",
        "pci.0.0.0.pcireg.vendor=0x8086",
        "-o",
        "pci.0.0.0.pcireg.device=0x1237",
        "-s",
        "3,e1000,tap0",
        "-s",
        "31,lpc",
        "-o",
        "pm.base=0x600",
        "-l",
        &format!("bootrom,{BIOS},fwcfg=qemu"),
        "-l",
        &format!("debugcon,{}", debugcon.display()),
        "-l",
        "com1,stdio",
        "-o",
        "fwcfg.user.0.name=etc/sercon-port",
        "-o",
        &format!("fwcfg.user.0.file={}", sercon.display()),
        // `-f` cannot carry this name's comma; the tree can.
        "-o",
        "fwcfg.user.1.name=pci8086,100f.rom",
        "-o",
        &format!("fwcfg.user.1.file={ROM}"),
        VM,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let mut bhyve = ns.cmd(&[BHYVE]);
    bhyve
        .args(&args)
        .env("BHYVE_RUNDIR", s.rundir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = bhyve.spawn().unwrap();
    let com1 = Arc::new(Mutex::new(String::new()));
    let mut out = child.stdout.take().unwrap();
    let c = com1.clone();
    std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while let Ok(n) = out.read(&mut b) {
            if n == 0 {
                break;
            }
            c.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&b[..n]));
        }
    });
    let mut err = child.stderr.take().unwrap();
    let errs = Arc::new(Mutex::new(String::new()));
    let e2 = errs.clone();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        *e2.lock().unwrap() = s;
    });
    ns.children.push(child);

    let start = Instant::now();
    let lease = loop {
        let l = std::fs::read_to_string(&leases).unwrap_or_default();
        if let Some(line) = l.lines().find(|l| l.contains(&mac_text)) {
            break Some(line.to_owned());
        }
        let exited = ns.children[1].try_wait().unwrap().is_some();
        if exited || start.elapsed() > Duration::from_secs(120) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let exited = ns.children[1].try_wait().unwrap();
    if exited.is_some() {
        std::thread::sleep(Duration::from_millis(300)); // readers catch up
    }
    let console = com1.lock().unwrap().clone();
    let stderr = errs.lock().unwrap().clone();
    let report = format!(
        "COM1:\n{console}\nbhyve stderr:\n{stderr}\ndnsmasq:\n{}",
        std::fs::read_to_string(&dnslog).unwrap_or_default()
    );
    assert!(
        console.contains("iPXE (PCI 00:03.0)"),
        "SeaBIOS did not run the iPXE ROM for 00:03.0\n{report}"
    );
    assert!(
        console.contains("iPXE initialising devices...ok"),
        "iPXE did not initialise\n{report}"
    );
    match lease {
        Some(line) => {
            // "<expiry> <mac> <ip> <host> <client-id>"
            let ip = line.split_whitespace().nth(2).unwrap_or("");
            assert!(ip.starts_with("10.77.0."), "{line}\n{report}");
            assert!(
                console.contains(&format!("net0 {mac_text}")),
                "iPXE did not report our MAC\n{report}"
            );
            eprintln!("iPXE leased {ip} for {mac_text} over e1000");
        }
        None if exited.is_some()
            && Path::new("/sys/module/kvm_pvm").exists()
            && stderr.contains("KVM internal error") =>
        {
            eprintln!(
                "kvm_pvm: its CPL0 emulator stopped iPXE before DHCP (checked up to \
                 iPXE's device initialisation; the lease needs hardware virtualization)\n{stderr}"
            );
        }
        None => panic!("no DHCP lease for {mac_text} within 120 s\n{report}"),
    }
}
