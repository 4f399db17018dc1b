/*
 * uart_pci_io: bytes both ways through a PCI 16550 (bhyve's 131f:2000 or
 * QEMU's pci-serial 1b36:0002), its registers in I/O BAR 0, polled.
 *
 * Command line: rxlen=N (bytes the host sends, default 4096), txlen=M
 * (bytes sent, default 4096), both <= 1 MiB. Output is documented in
 * crates/testguests/src/lib.rs; the host test (tests/e1000_uart_guests.rs)
 * generates and checks the same byte rules.
 */
#include "tg.h"
#include "pci.h"

#define RBR 0
#define THR 0
#define DLL 0
#define IER 1
#define DLM 1
#define FCR 2
#define IIR 2
#define LCR 3
#define MCR 4
#define LSR 5
#define MSR 6
#define SCR 7

#define LCR_8N1 0x03
#define LCR_DLAB 0x80
#define FCR_ENABLE 0x01
#define FCR_CLEAR 0x06
#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define ACK 0x21 /* '!' */
#define LIMIT (1u << 20)
/* The host connects and sends once it reads "receiving"; generous. */
#define TIMEOUT (1ull << 35)

static u16 base;

/* Byte i of what the host sends and of what we send (distinct rules, so
   an echo is not taken for an answer); every value 0-255 appears. */
static u8 host_byte(u32 i) { return (u8)(i * 7 + (i >> 8) + 3); }
static u8 guest_byte(u32 i) { return (u8)(i * 11 + (i >> 8) + 5); }

static u8 lsr(void) { return inb(base + LSR); }

static void put(u8 c)
{
	u64 t0 = rdtsc();
	while (!(lsr() & LSR_THRE))
		if (rdtsc() - t0 > TIMEOUT)
			tg_fail("THR never empty (LSR %x)", lsr());
	outb(base + THR, c);
}

static int get(u8 *c, u64 timeout)
{
	u64 t0 = rdtsc();
	for (;;) {
		u8 s = lsr();
		if (s & LSR_OE)
			tg_fail("receiver overrun (LSR %x)", s);
		if (s & LSR_DR) {
			*c = inb(base + RBR);
			return 1;
		}
		if (rdtsc() - t0 > timeout)
			return 0;
	}
}

/* 115200 8N1, FIFOs on, and the checks a driver's probe makes:
   the scratch register holds values, DLL/DLM read back under DLAB. */
static void init_uart(void)
{
	outb(base + IER, 0);
	outb(base + LCR, LCR_DLAB);
	outb(base + DLL, 1);
	outb(base + DLM, 0);
	if (inb(base + DLL) != 1 || inb(base + DLM) != 0)
		tg_fail("divisor reads %x %x, not 1 0", inb(base + DLL), inb(base + DLM));
	outb(base + LCR, LCR_8N1);
	if (inb(base + LCR) != LCR_8N1)
		tg_fail("LCR reads %x", inb(base + LCR));
	outb(base + FCR, FCR_ENABLE | FCR_CLEAR);
	outb(base + MCR, MCR_DTR | MCR_RTS | MCR_OUT2);
	for (u32 v = 0; v < 256; v += 0x55) {
		outb(base + SCR, v);
		if (inb(base + SCR) != v)
			tg_fail("scratch register reads %x after %x", inb(base + SCR), v);
	}
	u8 iir = inb(base + IIR);
	if ((iir & 0xc0) != 0xc0)
		tg_fail("IIR %x: FIFOs not enabled", iir);
	tg_printf("uart_pci_io: 115200 8n1, fifo enabled, scratch ok\n");
}

/* Loopback (MCR bit 4): what we write comes back to RBR and not to the
   line; the host checks that none of it reached it. */
static void loopback(void)
{
	static const u8 msg[] = "loop";
	outb(base + MCR, MCR_LOOP | MCR_DTR | MCR_RTS | MCR_OUT2);
	u8 msr = inb(base + MSR);
	/* In loopback DTR→DSR and RTS→CTS; OUT2→DCD. */
	if ((msr & 0xb0) != 0xb0)
		tg_fail("loopback MSR %x without CTS, DSR and DCD", msr);
	for (u32 i = 0; i < 4; i++) {
		put(msg[i]);
		u8 c;
		if (!get(&c, 1ull << 30) || c != msg[i])
			tg_fail("loopback byte %u did not come back", i);
	}
	outb(base + MCR, MCR_DTR | MCR_RTS | MCR_OUT2);
	tg_printf("uart_pci_io: loopback ok\n");
}

int main(void)
{
	struct pci_fn fn;
	tg_name = "uart_pci_io";
	u32 rxlen = tg_opt_u64("rxlen", 4096);
	u32 txlen = tg_opt_u64("txlen", 4096);
	if (rxlen > LIMIT || txlen > LIMIT) {
		tg_printf("uart_pci_io: rxlen and txlen must be at most 1048576\n");
		tg_exit(EXIT_BAD_CMDLINE);
	}
	if (!pci_find(0x131f, 0x2000, 0, &fn) && !pci_find(0x1b36, 0x0002, 0, &fn))
		tg_fail("no PCI 16550 (131f:2000 or 1b36:0002)");
	tg_printf("uart_pci_io: function %u %u id %04x:%04x\n", fn.slot, fn.func, fn.vendor,
		  fn.device);
	if (!pci_bar_is_io(&fn, 0) || !(base = (u16)pci_bar(&fn, 0)))
		tg_fail("BAR 0 is not an assigned I/O BAR");
	pci_enable(&fn);
	init_uart();
	loopback();

	tg_printf("uart_pci_io: receiving %u bytes\n", rxlen);
	u32 h = 0x811c9dc5u;
	for (u32 i = 0; i < rxlen; i++) {
		u8 c;
		if (!get(&c, TIMEOUT))
			tg_fail("timeout: received %u of %u bytes", i, rxlen);
		if (c != host_byte(i))
			tg_fail("byte %u is %x, not %x", i, c, host_byte(i));
		h = tg_fnv1a_more(h, &c, 1);
	}
	tg_printf("uart_pci_io: received %u bytes fnv1a %x\n", rxlen, h);

	h = 0x811c9dc5u;
	for (u32 i = 0; i < txlen; i++) {
		u8 c = guest_byte(i);
		put(c);
		h = tg_fnv1a_more(h, &c, 1);
	}
	tg_printf("uart_pci_io: sent %u bytes fnv1a %x\n", txlen, h);
	/* The host answers once it has every byte: nothing is lost at exit. */
	u8 c;
	if (!get(&c, TIMEOUT))
		tg_fail("timeout: no acknowledgement from the host");
	if (c != ACK)
		tg_fail("acknowledgement %x, not %x", c, ACK);
	tg_printf("uart_pci_io: host acknowledged\n");
	u64 t0 = rdtsc();
	while (!(lsr() & LSR_TEMT))
		if (rdtsc() - t0 > TIMEOUT)
			tg_fail("transmitter never empty");
	tg_printf("uart_pci_io: done\n");
	return EXIT_PASS;
}
