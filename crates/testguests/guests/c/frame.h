/*
 * frame.h: the test frames of the NIC guests (virtio_net_io, e1000_io),
 * a rule the host tests (tests/common/net.rs) rebuild byte for byte:
 * destination, source, ethertype 0x88b5, the sequence number (LE u32),
 * then pattern(seq, i) for every further byte i.
 */
#ifndef FRAME_H
#define FRAME_H

#include "tg.h"

#define ETHERTYPE 0x88b5
#define ETH_HDR 14
#define MAX_FRAME 1514
/* Sequence numbers the host uses, so a looped-back guest frame is told apart. */
#define RX_SEQ0 0x1000

static const u8 broadcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static const u8 host_mac[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };

/* Frame lengths cycle through [60, maxlen] so short, odd and full frames all appear. */
static inline u32 frame_len(u32 seq, u32 maxlen)
{
	return 60 + (seq * 331) % (maxlen - 59);
}

static inline u8 pattern(u32 seq, u32 i)
{
	return (u8)(seq * 7 + i * 13 + (i >> 8));
}

static inline void fill_frame(u8 *f, u32 len, u32 seq, const u8 *dst, const u8 *src)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = ETHERTYPE >> 8;
	f[13] = ETHERTYPE & 0xff;
	f[14] = seq;
	f[15] = seq >> 8;
	f[16] = seq >> 16;
	f[17] = seq >> 24;
	for (u32 i = 18; i < len; i++)
		f[i] = pattern(seq, i);
}

/* "xx:xx:xx:xx:xx:xx" and a NUL into out[18]. */
static inline void mac_text(const u8 *m, char *out)
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < 6; i++) {
		out[i * 3] = hex[m[i] >> 4];
		out[i * 3 + 1] = hex[m[i] & 15];
		out[i * 3 + 2] = i == 5 ? 0 : ':';
	}
}

#endif
