//! virtio-net judged by a driver nobody here wrote: Debian's iPXE ROM
//! for virtio-net (`ipxe-qemu`), run by Debian's SeaBIOS from the fw_cfg
//! file `pci1af4,1000.rom` (SeaBIOS's per-device ROM lookup), asks for a
//! DHCP lease through our tap; dnsmasq answers on the tap's side, all in
//! a network namespace the test creates (nothing touches the host's
//! network). The lease must name bhyve's default MAC for slot 3 and the
//! VM name, which iPXE read from our configuration space.
//!
//! Needs root, iproute2 and dnsmasq (.ci/run installs them).
//!
//! On this project's development machines `/dev/kvm` is kvm_pvm, whose
//! CPL0 emulator cannot execute iPXE's protected-mode `iret` (an
//! emulation failure, KVM_EXIT_INTERNAL_ERROR) right before iPXE opens
//! the NIC. There the test checks everything up to that point (SeaBIOS
//! ran the ROM for our function, iPXE initialised its devices) and says
//! so; with hardware virtualization it requires the lease.

mod common;

use common::ipxe::{ipxe_dhcp, IpxeCase};

#[test]
fn ipxe_gets_a_dhcp_lease_over_virtio_net() {
    // The lease's MAC and address are checked by the run.
    ipxe_dhcp(&IpxeCase {
        tag: "ipxe",
        device: "virtio-net",
        rom: "/usr/lib/ipxe/qemu/pxe-virtio.rom",
        rom_name: "pci1af4,1000.rom",
        vm: "ipxevm",
    });
}
