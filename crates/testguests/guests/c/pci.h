/*
 * pci.h: bus 0 through configuration mechanism #1 (ports 0xcf8/0xcfc).
 */
#ifndef PCI_H
#define PCI_H

#include "tg.h"

struct pci_fn {
	u8 bus, slot, func;
	u16 vendor, device;
};

#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_BAR0 0x10
#define PCI_CAP_PTR 0x34
#define PCI_CMD_IO 0x1
#define PCI_CMD_MEM 0x2
#define PCI_CMD_MASTER 0x4
#define PCI_STATUS_CAPS 0x10
#define PCI_CAP_VENDOR 0x09
#define PCI_CAP_MSIX 0x11

/* The nth (from 0) function of bus 0 with this ID; 1 if found. */
int pci_find(u16 vendor, u16 device, int nth, struct pci_fn *out);
/* The nth (from 0) function of bus 0 whose class, subclass and
   programming interface (config 0x09-0x0b) are class24; 1 if found. */
int pci_find_class(u32 class24, int nth, struct pci_fn *out);
u32 pci_cfg_read32(const struct pci_fn *f, u16 off);
u16 pci_cfg_read16(const struct pci_fn *f, u16 off);
u8 pci_cfg_read8(const struct pci_fn *f, u16 off);
void pci_cfg_write32(const struct pci_fn *f, u16 off, u32 v);
void pci_cfg_write16(const struct pci_fn *f, u16 off, u16 v);
void pci_cfg_write8(const struct pci_fn *f, u16 off, u8 v);
/* BAR bar's address: I/O port or memory (a 64-bit BAR's two halves
   combined), 0 if unimplemented or unassigned. Memory above 4 GiB is
   mapped (tg_map) before it is returned. */
u64 pci_bar(const struct pci_fn *f, int bar);
/* 1 if BAR bar is an I/O BAR. */
int pci_bar_is_io(const struct pci_fn *f, int bar);
/* Config offset of the nth (from 0) capability with this ID, or 0. */
int pci_find_cap(const struct pci_fn *f, u8 cap_id, int nth);
/* Enables I/O and memory decoding and bus mastering. */
void pci_enable(const struct pci_fn *f);

#endif
