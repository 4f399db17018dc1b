/*
 * e1000_io: frames both ways through an Intel 8254x (8086:100e, QEMU's
 * 82540EM, or 8086:100f, the 82545EM of bhyve and QEMU), registers in
 * memory BAR 0, legacy receive descriptors, polled (IMS stays 0).
 *
 * Command line: frames=K (sent, default 8), rxframes=M (expected from the
 * host, default 4), both <= 10000; offload=0|1 (default 1: one UDP frame
 * with IP and UDP checksum offload, then one TCP TSO frame);
 * rxbuf=2048|1024|512|256 (receive buffer size, default 2048; small
 * buffers spread a frame over several descriptors); iowindow=1 (also
 * check the IOADDR/IODATA window of the first I/O BAR); poptsfirst=1
 * (checksum options in the first data descriptor of a packet only). Output and frame
 * rules are documented in crates/testguests/src/lib.rs; the host test
 * (tests/e1000_uart_guests.rs) rebuilds every frame from the same rules.
 */
#include "tg.h"
#include "pci.h"
#include "frame.h"

/* Registers (Intel's 8254x developer's manual, section 13). */
#define CTRL 0x0000
#define STATUS 0x0008
#define EERD 0x0014
#define ICR 0x00c0
#define IMC 0x00d8
#define RCTL 0x0100
#define TCTL 0x0400
#define TIPG 0x0410
#define RDBAL 0x2800
#define RDBAH 0x2804
#define RDLEN 0x2808
#define RDH 0x2810
#define RDT 0x2818
#define RDTR 0x2820
#define TDBAL 0x3800
#define TDBAH 0x3804
#define TDLEN 0x3808
#define TDH 0x3810
#define TDT 0x3818
#define TIDV 0x3820
#define MTA 0x5200
#define RAL0 0x5400
#define RAH0 0x5404

#define CTRL_ASDE (1u << 5)
#define CTRL_SLU (1u << 6)
#define CTRL_RST (1u << 26)
#define STATUS_FD (1u << 0)
#define STATUS_LU (1u << 1)
#define EERD_START (1u << 0)
#define EERD_DONE (1u << 4)
#define ICR_TXDW (1u << 0)
#define ICR_RXT0 (1u << 7)
#define RCTL_EN (1u << 1)
#define RCTL_BAM (1u << 15)
#define RCTL_SECRC (1u << 26)
#define TCTL_EN (1u << 1)
#define TCTL_PSP (1u << 3)
#define RAH_AV (1u << 31)

/* Transmit descriptor command bits (legacy CMD byte; DCMD << 24 in the
   extended ones) and fields of the extended descriptors. */
#define TXD_EOP 0x01
#define TXD_IFCS 0x02
#define TXD_RS 0x08
#define TXD_DEXT 0x20
#define TXD_TSE 0x04
#define TUCMD_TCP 0x01
#define TUCMD_IP 0x02
#define DTYP_DATA (1u << 20)
#define POPTS_IXSM 0x01
#define POPTS_TXSM 0x02
#define TXD_STAT_DD 0x01
#define RXD_STAT_DD 0x01
#define RXD_STAT_EOP 0x02

#define NTXD 64
#define NRXD 64
/* The offloaded frames' payload rules use these sequence numbers. */
#define UDP_SEQ 0x2000
#define TSO_SEQ 0x3000
#define UDP_PAYLOAD 999
#define TSO_PAYLOAD 5000
#define TSO_MSS 1448
#define TX_TIMEOUT (1ull << 33)
#define RX_TIMEOUT (1ull << 35)

struct txd {
	u64 addr;
	u32 lower;
	u32 upper;
};
struct rxd {
	u64 addr;
	u16 len, csum;
	u8 status, errors;
	u16 special;
};

static u64 regs;
static u8 mac[6];
static volatile struct txd *txr;
static volatile struct rxd *rxr;
static u32 tx_tail, rx_next;
static u8 *rx_bufs[NRXD];
static u32 rx_bsize;

static u32 rd(u32 r) { return mmio_read32(regs + r); }
static void wr(u32 r, u32 v) { mmio_write32(regs + r, v); }

static u16 eeprom_word(u32 addr)
{
	wr(EERD, EERD_START | addr << 8);
	u64 t0 = rdtsc();
	for (;;) {
		u32 v = rd(EERD);
		if (v & EERD_DONE)
			return v >> 16;
		if (rdtsc() - t0 > TX_TIMEOUT)
			tg_fail("EERD read of word %u never done", addr);
	}
}

/* The first I/O BAR, for the IOADDR/IODATA window (BAR 1 on QEMU's
   parts, BAR 2 on bhyve's); 0 if none. */
static u16 io_window(const struct pci_fn *fn)
{
	for (int b = 1; b < 6; b++)
		if (pci_bar_is_io(fn, b))
			return (u16)pci_bar(fn, b);
	return 0;
}

static void reset_and_identify(const struct pci_fn *fn, int iowin)
{
	char text[18];
	wr(IMC, ~0u);
	wr(CTRL, rd(CTRL) | CTRL_RST);
	u64 t0 = rdtsc();
	while (rd(CTRL) & CTRL_RST)
		if (rdtsc() - t0 > TX_TIMEOUT)
			tg_fail("CTRL.RST never cleared");
	wr(IMC, ~0u);
	(void)rd(ICR);

	u16 sum = 0;
	for (u32 i = 0; i < 64; i++) {
		u16 w = eeprom_word(i);
		if (i < 3) {
			mac[2 * i] = w;
			mac[2 * i + 1] = w >> 8;
		}
		sum += w;
	}
	mac_text(mac, text);
	tg_printf("e1000_io: eeprom mac %s\n", text);
	if (sum != 0xbaba)
		tg_fail("eeprom checksum %x, not baba", sum);
	tg_printf("e1000_io: eeprom checksum ok\n");

	/* Reset loads RAL0/RAH0 from the EEPROM. */
	u32 ral = rd(RAL0), rah = rd(RAH0);
	u8 ra[6] = { ral, ral >> 8, ral >> 16, ral >> 24, rah, rah >> 8 };
	mac_text(ra, text);
	tg_printf("e1000_io: ral mac %s valid %u\n", text, rah >> 31);

	/* QEMU's I/O window reads 0: only checked when asked for. */
	u16 io = iowin ? io_window(fn) : 0;
	if (iowin && !io)
		tg_fail("no I/O BAR");
	if (io) {
		outl(io, RAL0);
		u32 v = inl(io + 4);
		outl(io, STATUS);
		u32 s = inl(io + 4);
		if (v != ral || s != rd(STATUS))
			tg_fail("I/O window reads %x %x, registers %x %x", v, s, ral, rd(STATUS));
		tg_printf("e1000_io: io window agrees\n");
	}

	wr(CTRL, rd(CTRL) | CTRL_SLU | CTRL_ASDE);
	t0 = rdtsc();
	while (!(rd(STATUS) & STATUS_LU))
		if (rdtsc() - t0 > TX_TIMEOUT)
			tg_fail("link down (STATUS %x)", rd(STATUS));
	u32 st = rd(STATUS);
	static const u32 speeds[4] = { 10, 100, 1000, 1000 };
	tg_printf("e1000_io: link up %u Mb/s %s duplex\n", speeds[(st >> 6) & 3],
		  st & STATUS_FD ? "full" : "half");
}

static void setup_rings(u32 rxbuf)
{
	static const u32 bsize_bits[4] = { 0, 1u << 16, 2u << 16, 3u << 16 };
	int sz = rxbuf == 2048 ? 0 : rxbuf == 1024 ? 1 : rxbuf == 512 ? 2 : 3;
	rx_bsize = rxbuf;

	/* Filters: our MAC in RA 0, nothing else, broadcasts accepted. */
	wr(RAL0, mac[0] | mac[1] << 8 | mac[2] << 16 | (u32)mac[3] << 24);
	wr(RAH0, mac[4] | mac[5] << 8 | RAH_AV);
	for (u32 i = 1; i < 16; i++) {
		wr(RAL0 + 8 * i, 0);
		wr(RAH0 + 8 * i, 0);
	}
	for (u32 i = 0; i < 128; i++)
		wr(MTA + 4 * i, 0);

	txr = tg_alloc(NTXD * sizeof(struct txd), 128);
	wr(TDBAL, (u32)(u64)txr);
	wr(TDBAH, (u32)((u64)txr >> 32));
	wr(TDLEN, NTXD * sizeof(struct txd));
	wr(TDH, 0);
	wr(TDT, 0);
	wr(TIDV, 0);
	wr(TIPG, 10 | 8 << 10 | 6 << 20);
	wr(TCTL, TCTL_EN | TCTL_PSP | 0x10 << 4 | 0x40 << 12);
	tx_tail = 0;

	rxr = tg_alloc(NRXD * sizeof(struct rxd), 128);
	for (u32 i = 0; i < NRXD; i++) {
		rx_bufs[i] = tg_alloc(rxbuf, 16);
		rxr[i].addr = (u64)rx_bufs[i];
	}
	wr(RDBAL, (u32)(u64)rxr);
	wr(RDBAH, (u32)((u64)rxr >> 32));
	wr(RDLEN, NRXD * sizeof(struct rxd));
	wr(RDTR, 0);
	wr(RDH, 0);
	tg_mb();
	wr(RDT, NRXD - 1);
	rx_next = 0;
	wr(RCTL, RCTL_EN | RCTL_BAM | RCTL_SECRC | bsize_bits[sz]);
}

/* Queues descriptors without moving TDT; returns the index of the last. */
static u32 tx_put(u64 addr, u32 lower, u32 upper)
{
	u32 i = tx_tail;
	txr[i].addr = addr;
	txr[i].lower = lower;
	txr[i].upper = upper;
	tx_tail = (tx_tail + 1) % NTXD;
	if (tx_tail == rd(TDH))
		tg_fail("tx ring full");
	return i;
}

/* Hands the queued descriptors to the device and waits for the DD bit
   of every descriptor in [from, tx_tail) and for TDH to reach TDT. */
static void tx_go(u32 from, const char *what)
{
	tg_mb();
	wr(TDT, tx_tail);
	u64 t0 = rdtsc();
	for (u32 i = from; i != tx_tail; i = (i + 1) % NTXD) {
		while (!(txr[i].upper & TXD_STAT_DD))
			if (rdtsc() - t0 > TX_TIMEOUT)
				tg_fail("%s: descriptor %u not done (TDH %u TDT %u)", what, i,
					rd(TDH), rd(TDT));
	}
	while (rd(TDH) != tx_tail)
		if (rdtsc() - t0 > TX_TIMEOUT)
			tg_fail("%s: TDH %u never reached %u", what, rd(TDH), tx_tail);
}

static u32 legacy_cmd(u32 len, u32 cmd) { return len | (TXD_IFCS | TXD_RS | cmd) << 24; }

/* Plain frames through legacy descriptors: every third in one
   descriptor, the others in two or three pieces. */
static void send_frames(u32 count)
{
	for (u32 seq = 0; seq < count; seq++) {
		u32 len = frame_len(seq, MAX_FRAME);
		u8 *f = tg_alloc(MAX_FRAME, 16);
		fill_frame(f, len, seq, broadcast, mac);
		u32 from = tx_tail;
		if (seq % 3 == 0) {
			tx_put((u64)f, legacy_cmd(len, TXD_EOP), 0);
		} else if (seq % 3 == 1) {
			tx_put((u64)f, legacy_cmd(ETH_HDR, 0), 0);
			tx_put((u64)f + ETH_HDR, legacy_cmd(len - ETH_HDR, TXD_EOP), 0);
		} else {
			u32 a = len / 3, b = len / 3;
			tx_put((u64)f, legacy_cmd(a, 0), 0);
			tx_put((u64)f + a, legacy_cmd(b, 0), 0);
			tx_put((u64)f + a + b, legacy_cmd(len - a - b, TXD_EOP), 0);
		}
		tx_go(from, "tx");
		tg_printf("e1000_io: tx %u len %u fnv1a %x\n", seq, len, tg_fnv1a(f, len));
	}
}

/* One's-complement sum of big-endian 16-bit words, folded. */
static u32 csum_add(u32 sum, const u8 *p, u32 len)
{
	for (u32 i = 0; i + 1 < len; i += 2)
		sum += (u32)p[i] << 8 | p[i + 1];
	if (len & 1)
		sum += (u32)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

/* Ethernet + IPv4 header (checksum 0: the device inserts it) from us to
   the host; returns the IPv4 pseudo-header sum without the length. */
static u32 ip_headers(u8 *f, u8 proto, u16 total, u16 id)
{
	static const u8 src_ip[4] = { 10, 0, 2, 15 }, dst_ip[4] = { 10, 0, 2, 2 };
	memcpy(f, host_mac, 6);
	memcpy(f + 6, mac, 6);
	f[12] = 0x08;
	f[13] = 0x00;
	u8 *ip = f + ETH_HDR;
	memset(ip, 0, 20);
	ip[0] = 0x45;
	ip[2] = total >> 8;
	ip[3] = total;
	ip[4] = id >> 8;
	ip[5] = id;
	ip[6] = 0x40; /* DF */
	ip[8] = 64;
	ip[9] = proto;
	memcpy(ip + 12, src_ip, 4);
	memcpy(ip + 16, dst_ip, 4);
	return csum_add(proto, ip + 12, 8);
}

/* Context descriptor: IP checksum over 14..33 into 24, L4 from 34 with
   its checksum at tucso. */
static void tx_context(u32 tucmd, u32 paylen, u8 tucso, u8 hdr_len, u16 mss)
{
	u32 i = tx_tail;
	txr[i].addr = (u64)ETH_HDR | 24ul << 8 | 33ul << 16 | 34ul << 32 | (u64)tucso << 40;
	txr[i].lower = paylen | (TXD_DEXT | TXD_RS | tucmd) << 24;
	txr[i].upper = (u32)hdr_len << 8 | (u32)mss << 16;
	tx_tail = (tx_tail + 1) % NTXD;
}

static u32 data_cmd(u32 len, u32 dcmd)
{
	return len | DTYP_DATA | (TXD_DEXT | TXD_IFCS | TXD_RS | dcmd) << 24;
}

#define POPTS ((POPTS_IXSM | POPTS_TXSM) << 8)
/* POPTS in every data descriptor (as Linux and FreeBSD) or, with
   poptsfirst=1, in the first only (as illumos' e1000g): the hardware
   takes it from the first. */
static u32 popts_rest = POPTS;

/* A UDP datagram whose IP and UDP checksums the device computes. */
static void send_udp(void)
{
	u32 len = ETH_HDR + 20 + 8 + UDP_PAYLOAD;
	u8 *f = tg_alloc(len, 16);
	u16 ulen = 8 + UDP_PAYLOAD;
	u32 ph = ip_headers(f, 17, 20 + ulen, 0x1234);
	u8 *udp = f + ETH_HDR + 20;
	udp[0] = 5555 >> 8;
	udp[1] = 5555 & 0xff;
	udp[2] = 4444 >> 8;
	udp[3] = 4444 & 0xff;
	udp[4] = ulen >> 8;
	udp[5] = ulen;
	/* The pseudo-header sum (with the length), not complemented. */
	u32 s = ph + ulen;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	udp[6] = s >> 8;
	udp[7] = s;
	for (u32 i = 0; i < UDP_PAYLOAD; i++)
		udp[8 + i] = pattern(UDP_SEQ, i);
	u32 from = tx_tail;
	tx_context(TUCMD_IP, 0, ETH_HDR + 20 + 6, 0, 0);
	tx_put((u64)f, data_cmd(100, 0), POPTS);
	tx_put((u64)f + 100, data_cmd(len - 100, TXD_EOP), popts_rest);
	tx_go(from, "udp");
	tg_printf("e1000_io: udp checksum offload len %u payload fnv1a %x\n", len,
		  tg_fnv1a(udp + 8, UDP_PAYLOAD));
}

/* A TCP segment of TSO_PAYLOAD bytes the device cuts at TSO_MSS. */
static void send_tso(void)
{
	u32 hdr = ETH_HDR + 20 + 20;
	u8 *f = tg_alloc(hdr + TSO_PAYLOAD, 16);
	u32 ph = ip_headers(f, 6, 0, 0x4321);
	u8 *tcp = f + ETH_HDR + 20;
	static const u8 th[20] = { 5555 >> 8, 5555 & 0xff, 4444 >> 8, 4444 & 0xff,
				   0x01, 0x02, 0x03, 0x04, 0x0a, 0x0b, 0x0c, 0x0d,
				   0x50, 0x19 /* ACK PSH FIN */, 0xff, 0xff };
	memcpy(tcp, th, 20);
	/* TSO wants the pseudo-header sum without the length. */
	tcp[16] = ph >> 8;
	tcp[17] = ph;
	for (u32 i = 0; i < TSO_PAYLOAD; i++)
		tcp[20 + i] = pattern(TSO_SEQ, i);
	u32 from = tx_tail;
	tx_context(TUCMD_IP | TUCMD_TCP | TXD_TSE, TSO_PAYLOAD, ETH_HDR + 20 + 16, hdr,
		   TSO_MSS);
	tx_put((u64)f, data_cmd(hdr, TXD_TSE), POPTS);
	tx_put((u64)f + hdr, data_cmd(2000, TXD_TSE), popts_rest);
	tx_put((u64)f + hdr + 2000, data_cmd(TSO_PAYLOAD - 2000, TXD_TSE | TXD_EOP), popts_rest);
	tx_go(from, "tso");
	tg_printf("e1000_io: tso paylen %u mss %u payload fnv1a %x\n", TSO_PAYLOAD, TSO_MSS,
		  tg_fnv1a(tcp + 20, TSO_PAYLOAD));
}

/* Reads the ICR twice: the bit must be set, then cleared by the read. */
static void check_icr(u32 bit, const char *name)
{
	u32 a = rd(ICR), b = rd(ICR);
	if (!(a & bit))
		tg_fail("ICR %x without %s", a, name);
	if (b & bit)
		tg_fail("ICR %s still set on a second read (%x)", name, b);
	tg_printf("e1000_io: icr %s set, then clear\n", name);
}

/* The next whole frame (descriptors up to EOP) into out; its length. */
static u32 rx_frame(u8 *out, u32 max)
{
	u32 got = 0;
	for (;;) {
		volatile struct rxd *d = &rxr[rx_next];
		u64 t0 = rdtsc();
		while (!(d->status & RXD_STAT_DD))
			if (rdtsc() - t0 > RX_TIMEOUT)
				return got ? (tg_fail("rx timeout inside a frame"), 0) : 0;
		tg_mb();
		u32 len = d->len;
		u8 st = d->status, err = d->errors;
		if (err)
			tg_fail("rx descriptor %u errors %x", rx_next, err);
		if (len > rx_bsize || got + len > max)
			tg_fail("rx descriptor %u length %u (frame so far %u)", rx_next, len, got);
		if (!(st & RXD_STAT_EOP) && len != rx_bsize)
			tg_fail("rx descriptor %u holds %u of %u bytes without EOP", rx_next, len,
				rx_bsize);
		memcpy(out + got, rx_bufs[rx_next], len);
		got += len;
		d->status = 0;
		d->len = 0;
		tg_mb();
		/* The descriptor goes back to the device at once. */
		wr(RDT, rx_next);
		rx_next = (rx_next + 1) % NRXD;
		if (st & RXD_STAT_EOP)
			return got;
	}
}

static void receive_frames(u32 count)
{
	static u8 f[MAX_FRAME + 64], expect[MAX_FRAME];
	u32 got = 0, foreign = 0;
	while (got < count) {
		u32 flen = rx_frame(f, sizeof(f));
		if (!flen)
			tg_fail("rx timeout after %u of %u frames", got, count);
		if (flen < ETH_HDR)
			tg_fail("rx frame of %u bytes", flen);
		if (f[0] & 1 ? memcmp(f, broadcast, 6) != 0 : memcmp(f, mac, 6) != 0)
			tg_fail("rx frame for another address passed the filter (%x:%x:..:%x)", f[0],
				f[1], f[5]);
		if (f[12] != ETHERTYPE >> 8 || f[13] != (ETHERTYPE & 0xff) || memcmp(f, mac, 6)) {
			foreign++;
			continue;
		}
		u32 seq = f[14] | f[15] << 8 | f[16] << 16 | (u32)f[17] << 24;
		if (seq != RX_SEQ0 + got)
			tg_fail("rx frame %u has sequence %x", got, seq);
		if (flen != frame_len(seq, MAX_FRAME))
			tg_fail("rx frame %x has length %u, not %u", seq, flen,
				frame_len(seq, MAX_FRAME));
		fill_frame(expect, flen, seq, mac, host_mac);
		if (memcmp(expect, f, flen) != 0)
			tg_fail("rx frame %x (len %u) differs from the pattern", seq, flen);
		tg_printf("e1000_io: rx %x len %u fnv1a %x\n", seq, flen, tg_fnv1a(f, flen));
		got++;
	}
	tg_printf("e1000_io: ignored %u foreign frames\n", foreign);
}

int main(void)
{
	struct pci_fn fn;
	tg_name = "e1000_io";
	u32 frames = tg_opt_u64("frames", 8);
	u32 rxframes = tg_opt_u64("rxframes", 4);
	u32 offload = tg_opt_u64("offload", 1) != 0;
	u32 rxbuf = tg_opt_u64("rxbuf", 2048);
	if (frames > 10000 || rxframes > 10000 ||
	    (rxbuf != 2048 && rxbuf != 1024 && rxbuf != 512 && rxbuf != 256)) {
		tg_printf("e1000_io: frames, rxframes <= 10000; rxbuf 2048, 1024, 512 or 256\n");
		tg_exit(EXIT_BAD_CMDLINE);
	}
	if (tg_opt_u64("poptsfirst", 0))
		popts_rest = 0;
	tg_printf("e1000_io: offload %u rxbuf %u\n", offload, rxbuf);
	if (!pci_find(0x8086, 0x100f, 0, &fn) && !pci_find(0x8086, 0x100e, 0, &fn))
		tg_fail("no 8254x function (8086:100f or 8086:100e)");
	tg_printf("e1000_io: function %u %u id %04x:%04x\n", fn.slot, fn.func, fn.vendor, fn.device);
	if (pci_bar_is_io(&fn, 0) || !(regs = pci_bar(&fn, 0)))
		tg_fail("BAR 0 is not an assigned memory BAR");
	pci_enable(&fn);

	reset_and_identify(&fn, tg_opt_u64("iowindow", 0) != 0);
	setup_rings(rxbuf);
	(void)rd(ICR);

	send_frames(frames);
	if (frames)
		check_icr(ICR_TXDW, "txdw");
	if (offload) {
		send_udp();
		send_tso();
	}
	tg_printf("e1000_io: sent %u frames\n", frames);
	tg_printf("e1000_io: receiving %u frames\n", rxframes);
	receive_frames(rxframes);
	if (rxframes)
		check_icr(ICR_RXT0, "rxt0");

	wr(RCTL, 0);
	wr(TCTL, 0);
	wr(CTRL, rd(CTRL) | CTRL_RST);
	tg_printf("e1000_io: done\n");
	return EXIT_PASS;
}
