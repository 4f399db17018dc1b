/*
 * virtio_blk_io: the virtio-blk data path, driven like a driver would,
 * checked in the guest and (by the test) against the host file.
 * Command line: transport=legacy|modern (required).
 * The exact output is documented in src/lib.rs.
 */
#include "virtio.h"

#define F_SIZE_MAX (1ul << 1)
#define F_SEG_MAX (1ul << 2)
#define F_RO (1ul << 5)
#define F_BLK_SIZE (1ul << 6)
#define F_FLUSH (1ul << 9)
#define F_TOPOLOGY (1ul << 10)
#define F_DISCARD (1ul << 13)
#define F_WRITE_ZEROES (1ul << 14)

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_DISCARD 11
#define T_WRITE_ZEROES 13
#define WZ_UNMAP 1

#define S_OK 0
#define S_IOERR 1
#define S_UNSUPP 2

/* The disk layout the test knows (512-byte sectors). */
#define MIN_SECTORS 16384ul      /* 8 MiB */
#define MAX_SECTORS 65536ul      /* 32 MiB: the guest keeps a copy */
#define DISCARD_AT 4096ul
#define ZEROES_AT 8192ul
#define ZEROES_UNMAP_AT 10240ul
#define RANGE_SECTORS 2048u      /* 1 MiB */
#define CHUNK (64u << 10)        /* bytes per read request */
#define BATCH 16                 /* requests in flight */
#define TIMEOUT (1ul << 34)      /* TSC ticks per completion */

static const struct {
	const char *name;
	u64 bit;
} feature_names[] = {
	{ "size_max", F_SIZE_MAX }, { "seg_max", F_SEG_MAX },   { "ro", F_RO },
	{ "blk_size", F_BLK_SIZE }, { "flush", F_FLUSH },       { "topology", F_TOPOLOGY },
	{ "discard", F_DISCARD },   { "write_zeroes", F_WRITE_ZEROES },
	{ "indirect_desc", VIRTIO_F_INDIRECT_DESC }, { "event_idx", VIRTIO_F_EVENT_IDX },
	{ "version_1", VIRTIO_F_VERSION_1 },
};

/* What we negotiate when offered. */
#define WANTED (F_SEG_MAX | F_RO | F_BLK_SIZE | F_FLUSH | F_TOPOLOGY | F_DISCARD | \
		F_WRITE_ZEROES | VIRTIO_F_INDIRECT_DESC)

/* The byte the test expects at disk offset o after a pattern write
   (lib.rs virtio_blk_io_pattern). */
static u8 pat(u64 o)
{
	u32 x = (u32)(o >> 9) * 2654435761u + (u32)(o & 511) * 0x01000193u;
	return (u8)(x >> 24);
}

struct hdr {
	u32 type, reserved;
	u64 sector;
};

/* One request in flight: header, discard segment, status. */
struct req {
	struct hdr hdr;
	u64 seg_sector;
	u32 seg_sectors, seg_flags;
	u8 status;
	int head;
	u32 used;
	u32 len; /* data bytes, for the used-length check */
	int tag; /* caller's */
};

struct disk {
	struct vdev d;
	struct vq q;
	struct req *reqs; /* BATCH of them */
	u64 cap;
};

static const char *status_name(u8 s)
{
	return s == S_OK ? "ok" : s == S_IOERR ? "ioerr" : s == S_UNSUPP ? "unsupp" : "bad";
}

static void print_features(const char *what, u64 f)
{
	tg_printf("virtio_blk_io: %s 0x%lx", what, f);
	for (u64 i = 0; i < sizeof(feature_names) / sizeof(feature_names[0]); i++)
		if (f & feature_names[i].bit)
			tg_printf(" %s", feature_names[i].name);
	tg_printf("\n");
}

/* Queues request r: header, then data (split over ndesc descriptors
   stride bytes apart, or through an indirect table), then status. */
static void submit(struct disk *k, struct req *r, u32 type, u64 sector, u8 *data, u32 len,
		   int ndesc, u64 stride, int indirect)
{
	struct vbuf b[VQ_MAX_INDIRECT + 3];
	int n = 0, dev_writes = type == T_IN || type == T_GET_ID;
	if (ndesc > VQ_MAX_INDIRECT)
		tg_fail("too many descriptors");
	r->hdr.type = type;
	r->hdr.reserved = 0;
	r->hdr.sector = sector;
	r->status = 0xff;
	b[n++] = (struct vbuf){ (u64)&r->hdr, sizeof(r->hdr), 0 };
	if (type == T_DISCARD || type == T_WRITE_ZEROES)
		b[n++] = (struct vbuf){ (u64)&r->seg_sector, 16, 0 };
	u32 piece = ndesc ? len / (u32)ndesc : 0;
	for (int i = 0; i < ndesc; i++) {
		u32 l = i + 1 < ndesc ? piece : len - piece * (u32)(ndesc - 1);
		b[n++] = (struct vbuf){ (u64)(data + (u64)i * stride), l, dev_writes };
	}
	b[n++] = (struct vbuf){ (u64)&r->status, 1, 1 };
	r->head = indirect ? vq_add_indirect(&k->q, b, n) : vq_add(&k->q, b, n);
	if (r->head < 0)
		tg_fail("queue full");
}

/* Kicks and waits for the n requests from k->reqs. */
static void complete(struct disk *k, int n)
{
	vq_kick(&k->q);
	for (int done = 0; done < n; done++) {
		u32 len;
		int head = vq_poll(&k->q, &len, TIMEOUT);
		if (head < 0)
			tg_fail("timeout: 0x%x of 0x%x requests completed", done, n);
		int i = 0;
		while (i < n && k->reqs[i].head != head)
			i++;
		if (i == n)
			tg_fail("used id 0x%x is no request", head);
		k->reqs[i].used = len;
		k->reqs[i].head = -1;
	}
}

/* One request, synchronously: its status. */
static u8 one(struct disk *k, u32 type, u64 sector, u8 *data, u32 len, int ndesc)
{
	submit(k, &k->reqs[0], type, sector, data, len, ndesc, len / (ndesc ? ndesc : 1), 0);
	complete(k, 1);
	return k->reqs[0].status;
}

/* Reads sectors [0, k->cap) into buf, BATCH requests of CHUNK at a time
   (adjacent: a device may merge them). */
static void read_all(struct disk *k, u8 *buf)
{
	u64 bytes = k->cap * 512;
	for (u64 off = 0; off < bytes;) {
		int n = 0;
		for (; n < BATCH && off < bytes; n++) {
			u32 l = bytes - off < CHUNK ? (u32)(bytes - off) : CHUNK;
			submit(k, &k->reqs[n], T_IN, off / 512, buf + off, l, 1, 0, 0);
			k->reqs[n].len = l;
			off += l;
		}
		complete(k, n);
		for (int i = 0; i < n; i++) {
			struct req *r = &k->reqs[i];
			if (r->status != S_OK || r->used != r->len + 1)
				tg_fail("read at sector 0x%lx: %s, used 0x%x", r->hdr.sector,
					status_name(r->status), r->used);
		}
	}
}

/* Finds, negotiates and sets up the nth virtio-blk function. */
static int open_disk(struct disk *k, int nth, enum vtransport t, int verbose)
{
	struct pci_fn f;
	if (!pci_find(VIRTIO_VENDOR, 0x1001, nth, &f))
		return 0;
	if (verbose)
		tg_printf("virtio_blk_io: function 0x%x 0x%x\n", f.slot, f.func);
	if (!vdev_init(&k->d, &f, t))
		tg_fail("function 0x%x: no %s transport", f.slot, vt_name(t));
	u64 offered = vdev_features(&k->d);
	u64 taken = offered & WANTED;
	if (!vdev_set_features(&k->d, taken))
		tg_fail("features 0x%lx refused", taken);
	if (verbose) {
		print_features("offered", offered);
		print_features("taken", k->d.features);
	}
	if (!vq_init(&k->d, &k->q, 0, 128))
		tg_fail("no queue 0");
	k->reqs = tg_alloc(sizeof(struct req) * BATCH, 64);
	for (int i = 0; i < BATCH; i++)
		k->reqs[i].head = -1;
	vdev_driver_ok(&k->d);
	if (vdev_status(&k->d) & (VIRTIO_S_FAILED | VIRTIO_S_NEEDS_RESET))
		tg_fail("device status 0x%x after DRIVER_OK", vdev_status(&k->d));
	k->cap = vdev_cfg64(&k->d, 0);
	return 1;
}

static void print_config(struct disk *k)
{
	struct vdev *d = &k->d;
	u64 f = d->features;
	tg_printf("virtio_blk_io: capacity 0x%lx sectors\n", k->cap);
	if (f & F_SEG_MAX)
		tg_printf("virtio_blk_io: seg_max 0x%x\n", vdev_cfg32(d, 12));
	if (f & F_BLK_SIZE)
		tg_printf("virtio_blk_io: blk_size 0x%x\n", vdev_cfg32(d, 20));
	if (f & F_TOPOLOGY)
		tg_printf("virtio_blk_io: topology exp 0x%x align 0x%x min_io 0x%x opt_io 0x%x\n",
			  vdev_cfg8(d, 24), vdev_cfg8(d, 25), vdev_cfg16(d, 26), vdev_cfg32(d, 28));
	if (f & F_DISCARD)
		tg_printf("virtio_blk_io: discard max 0x%x seg 0x%x align 0x%x\n",
			  vdev_cfg32(d, 36), vdev_cfg32(d, 40), vdev_cfg32(d, 44));
	if (f & F_WRITE_ZEROES)
		tg_printf("virtio_blk_io: write_zeroes max 0x%x seg 0x%x may_unmap 0x%x\n",
			  vdev_cfg32(d, 48), vdev_cfg32(d, 52), vdev_cfg8(d, 56));
}

static void get_id(struct disk *k, u8 *buf)
{
	memset(buf, 0, 21);
	u8 s = one(k, T_GET_ID, 0, buf, 20, 1);
	if (s != S_OK)
		tg_fail("GET_ID: %s", status_name(s));
	for (int i = 0; i < 20; i++)
		if (buf[i] && (buf[i] < 0x20 || buf[i] > 0x7e))
			buf[i] = '?';
	tg_printf("virtio_blk_io: serial %s\n", (char *)buf);
}

/* The pattern writes: several at once, of different shapes. */
static void pattern_writes(struct disk *k, u8 *expect, u8 *scratch)
{
	struct {
		const char *name;
		u64 sector;
		u32 sectors;
		int ndesc, indirect;
		u64 gap; /* bytes between the pieces in memory */
	} w[] = {
		{ "single", 8, 8, 1, 0, 0 },
		{ "multi", 1000, 128, 16, 0, 4096 + 64 },
		{ "indirect", 3001, 64, 8, 1, 512 },
		{ "last", k->cap - 1, 1, 2, 0, 100 },
	};
	int n = 0;
	u8 *mem = scratch;
	for (u64 i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
		if (w[i].indirect && !(k->d.features & VIRTIO_F_INDIRECT_DESC)) {
			tg_printf("virtio_blk_io: write %s skipped, indirect_desc not offered\n",
				  w[i].name);
			continue;
		}
		u32 len = w[i].sectors * 512, piece = len / (u32)w[i].ndesc;
		u64 stride = piece + w[i].gap;
		u64 disk = w[i].sector * 512;
		/* The last piece takes the remainder (submit's split). */
		for (u32 b = 0; b < len; b++) {
			u32 p = b / piece < (u32)w[i].ndesc ? b / piece : (u32)w[i].ndesc - 1;
			mem[(u64)p * stride + (b - p * piece)] = pat(disk + b);
			expect[disk + b] = pat(disk + b);
		}
		submit(k, &k->reqs[n], T_OUT, w[i].sector, mem, len, w[i].ndesc, stride,
		       w[i].indirect);
		k->reqs[n].tag = (int)i;
		n++;
		mem += stride * (u64)w[i].ndesc + 4096;
	}
	complete(k, n);
	for (int j = 0; j < n; j++) {
		struct req *r = &k->reqs[j];
		int i = r->tag;
		if (r->status != S_OK || r->used != 1)
			tg_fail("write %s: %s, used 0x%x", w[i].name, status_name(r->status), r->used);
		tg_printf("virtio_blk_io: write %s sector 0x%lx 0x%x sectors 0x%x descriptors ok\n",
			  w[i].name, w[i].sector, w[i].sectors, w[i].ndesc);
	}
}

static void range_op(struct disk *k, u32 type, u64 sector, u32 flags, const char *what)
{
	struct req *r = &k->reqs[0];
	r->seg_sector = sector;
	r->seg_sectors = RANGE_SECTORS;
	r->seg_flags = flags;
	submit(k, r, type, 0, NULL, 0, 0, 0, 0);
	complete(k, 1);
	if (r->status != S_OK)
		tg_fail("%s at sector 0x%lx: %s", what, sector, status_name(r->status));
	tg_printf("virtio_blk_io: %s sector 0x%lx 0x%x sectors ok\n", what, sector, RANGE_SECTORS);
}

static void flush(struct disk *k)
{
	u8 s = one(k, T_FLUSH, 0, NULL, 0, 0);
	if (s != S_OK)
		tg_fail("flush: %s", status_name(s));
	tg_printf("virtio_blk_io: flush ok\n");
}

static int all_zero(const u8 *p, u64 n)
{
	for (u64 i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* Requests the device must refuse. */
static void refusals(struct disk *k, u8 *buf)
{
	u8 s = one(k, T_IN, k->cap, buf, 512, 1);
	tg_printf("virtio_blk_io: read past the end: %s\n", status_name(s));
	s = one(k, T_IN, k->cap - 1, buf, 1024, 1);
	tg_printf("virtio_blk_io: read across the end: %s\n", status_name(s));
	s = one(k, 0x77, 0, buf, 512, 1);
	tg_printf("virtio_blk_io: unknown type: %s\n", status_name(s));
}

/* The second disk, if any, must be read-only. */
static void ro_disk(enum vtransport t, u8 *buf)
{
	struct disk ro;
	if (!open_disk(&ro, 1, t, 0)) {
		tg_printf("virtio_blk_io: no second disk\n");
		return;
	}
	tg_printf("virtio_blk_io: ro disk %s\n", ro.d.features & F_RO ? "ro offered" : "ro not offered");
	memset(buf, 0x5a, 512);
	u8 s = one(&ro, T_OUT, 0, buf, 512, 1);
	tg_printf("virtio_blk_io: ro disk write: %s\n", status_name(s));
	s = one(&ro, T_IN, 0, buf, 512, 1);
	if (s != S_OK)
		tg_fail("ro disk read: %s", status_name(s));
	tg_printf("virtio_blk_io: ro disk sector 0 fnv1a 0x%x\n", tg_fnv1a(buf, 512));
	vdev_reset(&ro.d);
}

int main(void)
{
	tg_name = "virtio_blk_io";
	enum vtransport t = vt_parse_transport();
	tg_printf("virtio_blk_io: transport %s\n", vt_name(t));
	struct disk k;
	if (!open_disk(&k, 0, t, 1))
		tg_fail("no virtio-blk function (1af4:1001)");
	print_config(&k);
	if (k.cap < MIN_SECTORS || k.cap > MAX_SECTORS)
		tg_fail("capacity 0x%lx sectors: want 0x%lx to 0x%lx", k.cap, MIN_SECTORS, MAX_SECTORS);
	u64 need = F_FLUSH | F_DISCARD | F_WRITE_ZEROES;
	if ((k.d.features & need) != need)
		tg_fail("flush, discard and write_zeroes are required");
	u8 *small = tg_alloc(4096, 4096);
	get_id(&k, small);

	u64 bytes = k.cap * 512;
	u8 *before = tg_alloc(bytes, 4096), *expect = tg_alloc(bytes, 4096);
	u8 *after = tg_alloc(bytes, 4096), *scratch = tg_alloc(1 << 20, 4096);
	read_all(&k, before);
	tg_printf("virtio_blk_io: read 0x%lx sectors fnv1a 0x%x\n", k.cap, tg_fnv1a(before, bytes));
	memcpy(expect, before, bytes);

	pattern_writes(&k, expect, scratch);
	flush(&k);
	range_op(&k, T_DISCARD, DISCARD_AT, 0, "discard");
	range_op(&k, T_WRITE_ZEROES, ZEROES_AT, 0, "write_zeroes");
	range_op(&k, T_WRITE_ZEROES, ZEROES_UNMAP_AT, WZ_UNMAP, "write_zeroes unmap");
	memset(expect + ZEROES_AT * 512, 0, RANGE_SECTORS * 512ul);
	memset(expect + ZEROES_UNMAP_AT * 512, 0, RANGE_SECTORS * 512ul);
	flush(&k);

	read_all(&k, after);
	/* A discard may leave the data or zero it; the rest must match. */
	u8 *disc = after + DISCARD_AT * 512;
	u64 dlen = RANGE_SECTORS * 512ul;
	if (all_zero(disc, dlen))
		tg_printf("virtio_blk_io: discarded range reads zero\n");
	else if (memcmp(disc, before + DISCARD_AT * 512, dlen) == 0)
		tg_printf("virtio_blk_io: discarded range keeps its data\n");
	else
		tg_fail("discarded range reads neither zero nor its old data");
	memcpy(expect + DISCARD_AT * 512, disc, dlen);
	for (u64 i = 0; i < bytes; i++)
		if (after[i] != expect[i])
			tg_fail("read back: byte 0x%lx is 0x%x, expected 0x%x", i, after[i], expect[i]);
	tg_printf("virtio_blk_io: read back 0x%lx sectors fnv1a 0x%x as expected\n", k.cap,
		  tg_fnv1a(after, bytes));

	refusals(&k, small);
	vdev_reset(&k.d);
	ro_disk(t, small);
	tg_printf("virtio_blk_io: done\n");
	return EXIT_PASS;
}
