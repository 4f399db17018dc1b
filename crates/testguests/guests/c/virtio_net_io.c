/*
 * virtio_net_io: frames both ways through a virtio-net function (1af4:1000)
 * in the legacy or the modern transport, every byte checked.
 *
 * Command line: transport=legacy|modern (required), mrg=0|1 (negotiate
 * MRG_RXBUF, default 0), frames=K (sent, default 8), rxframes=M (expected
 * from the host, default 4). Output and the frame format are documented in
 * crates/testguests/src/lib.rs; the host test (tests/virtio_net_p9.rs)
 * rebuilds every frame from the same rule.
 */
#include "tg.h"
#include "pci.h"
#include "virtio.h"
#include "frame.h"

#define NET_F_MTU (1ull << 3)
#define NET_F_MAC (1ull << 5)
#define NET_F_MRG_RXBUF (1ull << 15)
#define NET_F_STATUS (1ull << 16)
#define RING_F_INDIRECT (1ull << 28)
#define FEAT_VERSION_1 (1ull << 32)

#define RX_BUFS 16
#define TX_BATCH 8
#define QSIZE 64
/* ~3 s at 3 GHz per used element; the receive wait is longer because the
 * host only starts sending once it has read our "receiving" line. */
#define TX_TIMEOUT (1ull << 33)
#define RX_TIMEOUT (1ull << 35)

static u8 mac[6];
static u32 hdr_len;

static void send_frames(struct vq *tx, u32 count, u32 maxlen, int indirect)
{
	u8 *buf[TX_BATCH];
	u32 seq = 0;
	while (seq < count) {
		u32 n = 0;
		for (; n < TX_BATCH && seq + n < count; n++) {
			u32 s = seq + n;
			u32 len = frame_len(s, maxlen);
			/* Header and frame contiguous, so every layout below sends the same bytes. */
			buf[n] = tg_alloc(hdr_len + MAX_FRAME, 16);
			fill_frame(buf[n] + hdr_len, len, s, broadcast, mac);
			struct vbuf two[2] = {
				{ (u64)buf[n], hdr_len, 0 },
				{ (u64)buf[n] + hdr_len, len, 0 },
			};
			struct vbuf one = { (u64)buf[n], hdr_len + len, 0 };
			int head;
			/* Three layouts: header and frame apart, together, and through an indirect table. */
			if (s % 3 == 1)
				head = vq_add(tx, &one, 1);
			else if (s % 3 == 2 && indirect)
				head = vq_add_indirect(tx, two, 2);
			else
				head = vq_add(tx, two, 2);
			if (head < 0)
				tg_fail("tx queue full at frame %u", s);
			tg_printf("virtio_net_io: tx %u len %u fnv1a %x\n", s, len,
				  tg_fnv1a(buf[n] + hdr_len, len));
		}
		vq_kick(tx);
		for (u32 i = 0; i < n; i++) {
			u32 ulen;
			if (vq_poll(tx, &ulen, TX_TIMEOUT) < 0)
				tg_fail("tx timeout: frame %u of batch at %u not used", i, seq);
		}
		seq += n;
	}
}

static u8 *rx_buf[1024];

static void post_rx(struct vq *rx, u8 *b, int mrg)
{
	struct vbuf one = { (u64)b, hdr_len + MAX_FRAME, 1 };
	struct vbuf two[2] = {
		{ (u64)b, hdr_len, 1 },
		{ (u64)b + hdr_len, MAX_FRAME, 1 },
	};
	/* Mergeable buffers are single descriptors; without them the classic header + data pair. */
	int head = mrg ? vq_add(rx, &one, 1) : vq_add(rx, two, 2);
	if (head < 0 || head >= 1024)
		tg_fail("rx queue full (head %d)", head);
	rx_buf[head] = b;
}

static void receive_frames(struct vq *rx, u32 count, int mrg)
{
	u8 expect[MAX_FRAME];
	u32 got = 0, foreign = 0;
	while (got < count) {
		u32 len;
		int head = vq_poll(rx, &len, RX_TIMEOUT);
		if (head < 0)
			tg_fail("rx timeout after %u of %u frames", got, count);
		u8 *b = head < 1024 ? rx_buf[head] : 0;
		if (!b)
			tg_fail("rx used head %d was not posted", head);
		rx_buf[head] = 0;
		if (len < hdr_len + ETH_HDR || len > hdr_len + MAX_FRAME)
			tg_fail("rx used length %u", len);
		u8 *f = b + hdr_len;
		u32 flen = len - hdr_len;
		if (b[1] != 0)
			tg_fail("rx gso_type %u without offloads", b[1]);
		if (hdr_len == 12 && (b[10] | b[11] << 8) != 1)
			tg_fail("rx num_buffers %u", b[10] | b[11] << 8);
		if (f[12] != ETHERTYPE >> 8 || f[13] != (ETHERTYPE & 0xff) ||
		    memcmp(f, mac, 6) != 0) {
			/* The host kernel's own chatter on the tap (IPv6 and such). */
			foreign++;
		} else {
			u32 seq = f[14] | f[15] << 8 | f[16] << 16 | (u32)f[17] << 24;
			if (seq != RX_SEQ0 + got)
				tg_fail("rx frame %u has sequence %x", got, seq);
			fill_frame(expect, flen, seq, mac, host_mac);
			if (flen < 60 || memcmp(expect, f, flen) != 0)
				tg_fail("rx frame %x (len %u) differs from the pattern", seq, flen);
			tg_printf("virtio_net_io: rx %x len %u fnv1a %x\n", seq, flen, tg_fnv1a(f, flen));
			got++;
		}
		memset(b, 0, hdr_len + MAX_FRAME);
		post_rx(rx, b, mrg);
		vq_kick(rx);
	}
	tg_printf("virtio_net_io: ignored %u foreign frames\n", foreign);
}

int main(void)
{
	static struct vdev dev;
	static struct vq rx, tx;
	struct pci_fn fn;
	char text[18];

	tg_name = "virtio_net_io";
	enum vtransport t = vt_parse_transport();
	int mrg = tg_opt_u64("mrg", 0) != 0;
	u32 frames = tg_opt_u64("frames", 8);
	u32 rxframes = tg_opt_u64("rxframes", 4);
	if (frames > 10000 || rxframes > 10000) {
		tg_printf("virtio_net_io: frames and rxframes must be at most 10000\n");
		tg_exit(EXIT_BAD_CMDLINE);
	}
	tg_printf("virtio_net_io: transport %s mrg %u\n", t == VT_MODERN ? "modern" : "legacy", mrg);
	if (!pci_find(0x1af4, 0x1000, 0, &fn))
		tg_fail("no virtio-net function (1af4:1000)");
	tg_printf("virtio_net_io: function %u %u\n", fn.slot, fn.func);
	if (!vdev_init(&dev, &fn, t))
		tg_fail("cannot initialise the function");

	u64 offered = vdev_features(&dev);
	if (!(offered & NET_F_MAC))
		tg_fail("MAC not offered");
	u64 want = NET_F_MAC | (offered & (NET_F_MTU | NET_F_STATUS | RING_F_INDIRECT));
	if (mrg) {
		if (!(offered & NET_F_MRG_RXBUF))
			tg_fail("MRG_RXBUF not offered");
		want |= NET_F_MRG_RXBUF;
	}
	if (!vdev_set_features(&dev, want))
		tg_fail("features %lx refused", want);
	/* virtio 1.x and mergeable buffers both carry num_buffers: 12 bytes, else the legacy 10. */
	hdr_len = (t == VT_MODERN || mrg) ? 12 : 10;
	tg_printf("virtio_net_io: header %u bytes\n", hdr_len);

	for (int i = 0; i < 6; i++)
		mac[i] = vdev_cfg8(&dev, i);
	mac_text(mac, text);
	tg_printf("virtio_net_io: mac %s\n", text);
	if (want & NET_F_STATUS)
		tg_printf("virtio_net_io: link %s\n", vdev_cfg16(&dev, 6) & 1 ? "up" : "down");
	u32 mtu = 1500;
	if (want & NET_F_MTU) {
		mtu = vdev_cfg16(&dev, 10);
		tg_printf("virtio_net_io: mtu %u\n", mtu);
		if (mtu < 46 || mtu > MAX_FRAME - ETH_HDR)
			mtu = MAX_FRAME - ETH_HDR;
	} else {
		tg_printf("virtio_net_io: no mtu offered\n");
	}

	if (!vq_init(&dev, &rx, 0, QSIZE) || !vq_init(&dev, &tx, 1, QSIZE))
		tg_fail("cannot set up the queues");
	vdev_driver_ok(&dev);
	for (int i = 0; i < RX_BUFS; i++)
		post_rx(&rx, tg_alloc(hdr_len + MAX_FRAME, 16), mrg);
	vq_kick(&rx);

	send_frames(&tx, frames, mtu + ETH_HDR, (want & RING_F_INDIRECT) != 0);
	tg_printf("virtio_net_io: sent %u frames\n", frames);
	tg_printf("virtio_net_io: receiving %u frames\n", rxframes);
	receive_frames(&rx, rxframes, mrg);
	vdev_reset(&dev);
	if (vdev_status(&dev) != 0)
		tg_fail("status %x after reset", vdev_status(&dev));
	tg_printf("virtio_net_io: done\n");
	return EXIT_PASS;
}
