/*
 * pci.c: configuration mechanism #1 and BAR/capability helpers.
 */
#include "pci.h"

#define CONF1_ADDR 0xcf8
#define CONF1_DATA 0xcfc

static u32 conf1(const struct pci_fn *f, u16 off)
{
	return 0x80000000u | ((u32)f->bus << 16) | ((u32)f->slot << 11) | ((u32)f->func << 8) |
	       (off & 0xfc);
}

u32 pci_cfg_read32(const struct pci_fn *f, u16 off)
{
	outl(CONF1_ADDR, conf1(f, off));
	return inl(CONF1_DATA);
}

u16 pci_cfg_read16(const struct pci_fn *f, u16 off)
{
	outl(CONF1_ADDR, conf1(f, off));
	return inw(CONF1_DATA + (off & 2));
}

u8 pci_cfg_read8(const struct pci_fn *f, u16 off)
{
	outl(CONF1_ADDR, conf1(f, off));
	return inb(CONF1_DATA + (off & 3));
}

void pci_cfg_write32(const struct pci_fn *f, u16 off, u32 v)
{
	outl(CONF1_ADDR, conf1(f, off));
	outl(CONF1_DATA, v);
}

void pci_cfg_write16(const struct pci_fn *f, u16 off, u16 v)
{
	outl(CONF1_ADDR, conf1(f, off));
	outw(CONF1_DATA + (off & 2), v);
}

void pci_cfg_write8(const struct pci_fn *f, u16 off, u8 v)
{
	outl(CONF1_ADDR, conf1(f, off));
	outb(CONF1_DATA + (off & 3), v);
}

/* Walks bus 0: the nth function for which match(f, a, b) holds. */
static int pci_walk(int (*match)(const struct pci_fn *, u32, u32), u32 a, u32 b, int nth,
		    struct pci_fn *out)
{
	for (int slot = 0; slot < 32; slot++) {
		for (int func = 0; func < 8; func++) {
			struct pci_fn f = { 0, (u8)slot, (u8)func, 0, 0 };
			u32 id = pci_cfg_read32(&f, 0);
			if ((id & 0xffff) == 0xffff) {
				if (func == 0)
					break;
				continue;
			}
			f.vendor = (u16)id;
			f.device = (u16)(id >> 16);
			if (match(&f, a, b) && nth-- == 0) {
				*out = f;
				return 1;
			}
			/* Functions 1-7 only exist in a multi-function device. */
			if (func == 0 && !(pci_cfg_read8(&f, 0x0e) & 0x80))
				break;
		}
	}
	return 0;
}

static int match_id(const struct pci_fn *f, u32 vendor, u32 device)
{
	return f->vendor == vendor && f->device == device;
}

static int match_class(const struct pci_fn *f, u32 class24, u32 unused)
{
	(void)unused;
	return pci_cfg_read32(f, 0x08) >> 8 == class24;
}

int pci_find(u16 vendor, u16 device, int nth, struct pci_fn *out)
{
	return pci_walk(match_id, vendor, device, nth, out);
}

int pci_find_class(u32 class24, int nth, struct pci_fn *out)
{
	return pci_walk(match_class, class24, 0, nth, out);
}

int pci_bar_is_io(const struct pci_fn *f, int bar)
{
	return bar >= 0 && bar < 6 && (pci_cfg_read32(f, PCI_BAR0 + 4 * bar) & 1);
}

/* Size of a memory BAR (decoding off while it is probed). */
static u64 bar_size(const struct pci_fn *f, int bar, int is64)
{
	u16 off = PCI_BAR0 + 4 * bar;
	u16 cmd = pci_cfg_read16(f, PCI_COMMAND);
	pci_cfg_write16(f, PCI_COMMAND, cmd & ~(PCI_CMD_IO | PCI_CMD_MEM));
	u32 lo = pci_cfg_read32(f, off), hi = is64 ? pci_cfg_read32(f, off + 4) : 0;
	pci_cfg_write32(f, off, ~0u);
	u64 mask = pci_cfg_read32(f, off) & ~0xful;
	if (is64) {
		pci_cfg_write32(f, off + 4, ~0u);
		mask |= (u64)pci_cfg_read32(f, off + 4) << 32;
		pci_cfg_write32(f, off + 4, hi);
	} else {
		mask |= 0xffffffff00000000ul;
	}
	pci_cfg_write32(f, off, lo);
	pci_cfg_write16(f, PCI_COMMAND, cmd);
	return mask ? ~mask + 1 : 0;
}

u64 pci_bar(const struct pci_fn *f, int bar)
{
	if (bar < 0 || bar > 5)
		return 0;
	u32 lo = pci_cfg_read32(f, PCI_BAR0 + 4 * bar);
	if (lo & 1)
		return lo & ~3u;
	int is64 = ((lo >> 1) & 3) == 2;
	u64 a = lo & ~0xfu;
	if (is64) {
		if (bar == 5)
			return 0;
		a |= (u64)pci_cfg_read32(f, PCI_BAR0 + 4 * bar + 4) << 32;
	}
	if (a >= (4ul << 30))
		tg_map(a, bar_size(f, bar, is64));
	return a;
}

int pci_find_cap(const struct pci_fn *f, u8 cap_id, int nth)
{
	if (!(pci_cfg_read16(f, PCI_STATUS) & PCI_STATUS_CAPS))
		return 0;
	u8 p = pci_cfg_read8(f, PCI_CAP_PTR) & 0xfc;
	/* 48 capabilities fit in 192 bytes: more means a loop. */
	for (int n = 0; p >= 0x40 && n < 48; n++) {
		if (pci_cfg_read8(f, p) == cap_id && nth-- == 0)
			return p;
		p = pci_cfg_read8(f, p + 1) & 0xfc;
	}
	return 0;
}

void pci_enable(const struct pci_fn *f)
{
	u16 cmd = pci_cfg_read16(f, PCI_COMMAND);
	pci_cfg_write16(f, PCI_COMMAND, cmd | PCI_CMD_IO | PCI_CMD_MEM | PCI_CMD_MASTER);
}
