//! e1000 judged by a driver nobody here wrote: Debian's iPXE ROM for
//! the 82545EM (`ipxe-qemu`'s `pxe-e1000.rom`), run by Debian's SeaBIOS
//! from the fw_cfg file `pci8086,100f.rom`, probes our function (EEPROM,
//! PHY, rings) and asks for a DHCP lease through our tap; dnsmasq answers
//! on the tap's side, in a network namespace the test creates. The MAC
//! iPXE reports must be bhyve's default for slot 3 and the VM name,
//! which iPXE can only have read from our EEPROM/receive address.
//!
//! The namespace and run are tests/common/ipxe.rs (shared with
//! virtio-net's iPXE test). Needs root, iproute2 and dnsmasq (.ci/run
//! installs them).
//!
//! On kvm_pvm (this project's development machines) iPXE's protected-mode
//! `iret` is an emulation failure before DHCP; there the test checks
//! everything up to that point and says so; with hardware
//! virtualization it requires the lease.

mod common;

use common::ipxe::{ipxe_dhcp, IpxeCase};

#[test]
fn ipxe_probes_e1000_and_asks_for_a_lease() {
    let lease = ipxe_dhcp(&IpxeCase {
        tag: "e1000-ipxe",
        device: "e1000",
        rom: "/usr/lib/ipxe/qemu/pxe-e1000.rom",
        rom_name: "pci8086,100f.rom",
        vm: "e1000vm",
    });
    if let Some(l) = lease {
        assert!(
            bhyve_lab::sercon::strip_escapes(&l.console)
                .lines()
                .any(|t| bhyve_lab::sercon::garbled_contains(t, &format!("net0 {}", l.mac_text))),
            "iPXE did not report our MAC\n{}",
            l.report
        );
    }
}
