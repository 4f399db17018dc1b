/*
 * nvme_io: an NVMe controller (class 01/08/02) driven as a polled driver
 * would: disable/enable, admin queue, Identify, Set Features Number of
 * Queues, several I/O queue pairs all used, writes and reads through
 * PRP1, PRP1+PRP2 and (chained) PRP lists, Flush, Dataset Management
 * deallocate, a full I/O SQ, the CQ phase wrap, bad PRPs, a checked
 * read-back, queue deletion and shutdown.
 * Command line: queues=N (default 4), qsz=N (default 64), bench=1 reqs=N
 * (the benchmark instead). The exact output is documented in src/lib.rs.
 */
#include "pci.h"
#include "tg.h"

#define R_CAP 0x00
#define R_VS 0x08
#define R_INTMS 0x0c
#define R_CC 0x14
#define R_CSTS 0x1c
#define R_AQA 0x24
#define R_ASQ 0x28
#define R_ACQ 0x30
#define CC_EN 1u
#define CC_IOQES (6u << 16 | 4u << 20) /* 64-byte SQEs, 16-byte CQEs */
#define CC_SHN_NORMAL (1u << 14)
#define CSTS_RDY 1u
#define CSTS_CFS 2u
#define CSTS_SHST_DONE (2u << 2)

#define A_DELETE_SQ 0x00
#define A_CREATE_SQ 0x01
#define A_DELETE_CQ 0x04
#define A_CREATE_CQ 0x05
#define A_IDENTIFY 0x06
#define A_SET_FEATURES 0x09
#define FEAT_NUM_QUEUES 0x07
#define IO_FLUSH 0x00
#define IO_WRITE 0x01
#define IO_READ 0x02
#define IO_DSM 0x09

#define PAGE 4096u
#define MAXQ 16
#define ADMIN_QSZ 16
#define MAX_PAGES 40
#define TIMEOUT (1ul << 34)
#define MIN_BYTES (8ul << 20)
#define MAX_BYTES (64ul << 20)
#define CHUNK (64u << 10)
#define PATTERN_AT (1ul << 20)   /* byte offset of the pattern writes */
#define PATTERN_STRIDE (256ul << 10)
#define DEALLOC_AT (8ul << 20)
#define DEALLOC_BYTES (1ul << 20)

struct sqe {
	u32 cdw0, nsid, rsvd[2];
	u64 mptr, prp1, prp2;
	u32 cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};
struct cqe {
	u32 dw0, dw1;
	u16 sqhd, sqid, cid, status;
};

struct queue {
	u16 id, size, sq_tail, cq_head;
	int phase, wraps;
	volatile struct sqe *sq;
	volatile struct cqe *cq;
	u64 sq_db, cq_db;
};

/* A transfer's data, page by page (pages need not be contiguous). */
struct xfer {
	u32 len, off;
	int npages;
	u8 *page[MAX_PAGES];
	u64 *list; /* PRP list storage (NULL: contiguous lists unused) */
	u32 list_off;
};

static u64 bar;
static u32 stride;
static struct queue admin, ioq[MAXQ];
static int nq;
static u32 lbasz;
static u64 nblocks;
static u64 kicks;

static u64 rd64(u32 off) { return mmio_read64(bar + off); }
static u32 rd32(u32 off) { return mmio_read32(bar + off); }
static void wr32(u32 off, u32 v) { mmio_write32(bar + off, v); }

static u8 pat(u64 o)
{
	u32 x = (u32)(o >> 9) * 2654435761u + (u32)(o & 511) * 0x01000193u;
	return (u8)(x >> 24) ^ 0xa5;
}

static void queue_init(struct queue *q, u16 id, u16 size)
{
	q->id = id;
	q->size = size;
	q->sq_tail = q->cq_head = 0;
	q->phase = 1;
	q->wraps = 0;
	q->sq = tg_alloc((u64)size * sizeof(struct sqe), PAGE);
	q->cq = tg_alloc((u64)size * sizeof(struct cqe), PAGE);
	q->sq_db = bar + 0x1000 + (2u * id) * stride;
	q->cq_db = bar + 0x1000 + (2u * id + 1) * stride;
}

static void submit(struct queue *q, const struct sqe *e)
{
	volatile u32 *dst = (volatile u32 *)&q->sq[q->sq_tail];
	const u32 *src = (const u32 *)e;
	for (int i = 0; i < 16; i++)
		dst[i] = src[i];
	q->sq_tail = (u16)((q->sq_tail + 1) % q->size);
}

static void ring(struct queue *q)
{
	tg_mb();
	mmio_write32(q->sq_db, q->sq_tail);
	kicks++;
}

/* The next completion of q, or 0 after the timeout. The CQ head
   doorbell is rung by the caller (ack). */
static int reap(struct queue *q, struct cqe *out, u64 timeout)
{
	u64 t0 = rdtsc();
	while ((q->cq[q->cq_head].status & 1) != q->phase)
		if (rdtsc() - t0 > timeout)
			return 0;
	tg_mb();
	*out = *(const struct cqe *)&q->cq[q->cq_head];
	if (++q->cq_head == q->size) {
		q->cq_head = 0;
		q->phase ^= 1;
		q->wraps++;
	}
	return 1;
}

static void ack(struct queue *q)
{
	mmio_write32(q->cq_db, q->cq_head);
	kicks++;
}

static u16 status_of(const struct cqe *c) { return (u16)(c->status >> 1) & 0x7ff; }

/* One admin command, synchronously: the status (SCT << 8 | SC). */
static u16 admin_cmd(struct sqe *e, u32 *result)
{
	static u16 cid;
	e->cdw0 = (e->cdw0 & 0xff) | (u32)++cid << 16;
	submit(&admin, e);
	ring(&admin);
	struct cqe c;
	if (!reap(&admin, &c, TIMEOUT))
		tg_fail("admin opcode 0x%x: timeout (csts 0x%x)", e->cdw0 & 0xff, rd32(R_CSTS));
	ack(&admin);
	if (c.cid != cid || c.sqid != 0)
		tg_fail("admin completion cid 0x%x sqid 0x%x, expected 0x%x 0", c.cid, c.sqid, cid);
	if (result)
		*result = c.dw0;
	return status_of(&c);
}

static void admin_ok(struct sqe *e, u32 *result, const char *what)
{
	u16 s = admin_cmd(e, result);
	if (s)
		tg_fail("%s: status 0x%x", what, s);
}

/* A transfer of len bytes starting off bytes into its first page, each
   page allocated on its own (so not contiguous), or contiguous at base. */
static void xfer_init(struct xfer *x, u32 len, u32 off, u8 *base, u32 list_off)
{
	x->len = len;
	x->off = off;
	x->npages = (int)((off + len + PAGE - 1) / PAGE);
	if (x->npages > MAX_PAGES)
		tg_fail("transfer of 0x%x bytes too long", len);
	for (int i = 0; i < x->npages; i++)
		x->page[i] = base ? base + (u64)i * PAGE : tg_alloc(PAGE, PAGE);
	x->list = tg_alloc(2 * PAGE, PAGE);
	x->list_off = list_off;
}

static u8 *xbyte(struct xfer *x, u32 i)
{
	u32 o = x->off + i;
	return x->page[o / PAGE] + o % PAGE;
}

/* PRP1 and PRP2 for x: the list (when needed) starts list_off bytes
   into its page; an entry in the page's last slot chains to the next. */
static void prps(struct xfer *x, struct sqe *e)
{
	e->prp1 = (u64)x->page[0] + x->off;
	e->prp2 = 0;
	if (x->npages == 2)
		e->prp2 = (u64)x->page[1];
	if (x->npages <= 2)
		return;
	u64 *l = (u64 *)((u8 *)x->list + x->list_off);
	e->prp2 = (u64)l;
	for (int i = 1; i < x->npages; i++) {
		if (((u64)l & (PAGE - 1)) == PAGE - 8 && i + 1 < x->npages) {
			/* The next page of the list; the chain pointer takes this slot. */
			u64 *next = (u64 *)(((u64)l + 8) & ~(u64)(PAGE - 1));
			*l = (u64)next;
			l = next;
		}
		*l++ = (u64)x->page[i];
	}
}

/* A read/write/flush/DSM command on queue q; the caller rings. */
static void io(struct queue *q, u8 op, u16 cid, u64 slba, u32 nlb, struct xfer *x)
{
	struct sqe e;
	memset(&e, 0, sizeof(e));
	e.cdw0 = op | (u32)cid << 16;
	e.nsid = 1;
	if (x)
		prps(x, &e);
	e.cdw10 = (u32)slba;
	e.cdw11 = (u32)(slba >> 32);
	e.cdw12 = nlb ? nlb - 1 : 0;
	submit(q, &e);
}

/* Waits for n completions of q whose cids are cid0..cid0+n-1: each
   status stored in st[cid - cid0]. */
static void collect(struct queue *q, u16 cid0, int n, u16 *st)
{
	static u8 seen[4096];
	memset(seen, 0, (u64)n);
	for (int i = 0; i < n; i++) {
		struct cqe c;
		if (!reap(q, &c, TIMEOUT))
			tg_fail("queue 0x%x: timeout, 0x%x of 0x%x completions (csts 0x%x)", q->id, i, n,
				rd32(R_CSTS));
		u16 k = (u16)(c.cid - cid0);
		if (c.sqid != q->id || k >= n || seen[k])
			tg_fail("queue 0x%x: completion cid 0x%x sqid 0x%x unexpected", q->id, c.cid,
				c.sqid);
		seen[k] = 1;
		st[k] = status_of(&c);
	}
	ack(q);
}

/* One I/O command, synchronously: its status. */
static u16 io_one(struct queue *q, u8 op, u64 slba, u32 nlb, struct xfer *x)
{
	u16 st;
	io(q, op, 7, slba, nlb, x);
	ring(q);
	collect(q, 7, 1, &st);
	return st;
}

/* Reads (or writes) [0, bytes) of the disk at buf, 64 KiB commands
   spread over every queue, up to 16 outstanding per queue. */
static void whole_disk(u8 *buf, u64 bytes)
{
	static struct xfer x[MAXQ][16];
	for (u64 at = 0; at < bytes;) {
		int per[MAXQ] = { 0 };
		/* A queue holds size - 1 commands. */
		int depth = ioq[0].size - 1 < 16 ? ioq[0].size - 1 : 16;
		for (int k = 0; k < depth && at < bytes; k++) {
			for (int i = 0; i < nq && at < bytes; i++) {
				u32 len = bytes - at < CHUNK ? (u32)(bytes - at) : CHUNK;
				xfer_init(&x[i][k], len, 0, buf + at, 0);
				io(&ioq[i], IO_READ, (u16)k, at / lbasz, len / lbasz, &x[i][k]);
				per[i]++;
				at += len;
			}
		}
		for (int i = 0; i < nq; i++) {
			u16 st[16];
			if (!per[i])
				continue;
			ring(&ioq[i]);
			collect(&ioq[i], 0, per[i], st);
			for (int k = 0; k < per[i]; k++)
				if (st[k])
					tg_fail("queue 0x%x: read: status 0x%x", ioq[i].id, st[k]);
		}
	}
}

/* Transfer shapes of the pattern writes: name, bytes, first-page offset,
   list offset (512-byte LBAs; 4096-byte LBAs drop the offsets). */
static const struct {
	const char *name;
	u32 len, off, list_off;
} shapes[] = {
	{ "prp1", 0x800, 0x600, 0 },
	{ "prp1+prp2", 0x1000, 0x600, 0 },
	{ "prp list chained", 0x10000, 0x200, PAGE - 0x20 },
	{ "prp list", 0x20000, 0, 0 },
};
#define NSHAPES 4

static void identify(void)
{
	u8 *id = tg_alloc(PAGE, PAGE);
	struct sqe e;
	memset(&e, 0, sizeof(e));
	e.cdw0 = A_IDENTIFY;
	e.prp1 = (u64)id;
	e.cdw10 = 1;
	admin_ok(&e, NULL, "identify controller");
	char s[41];
	struct {
		const char *what;
		int at, len;
	} strs[] = { { "model", 24, 40 }, { "serial", 4, 20 }, { "firmware", 64, 8 } };
	for (int i = 0; i < 3; i++) {
		int n = strs[i].len;
		memcpy(s, id + strs[i].at, (u64)n);
		while (n && (s[n - 1] == ' ' || s[n - 1] == 0))
			n--;
		s[n] = 0;
		tg_printf("nvme_io: %s %s\n", strs[i].what, s);
	}
	u32 nn = *(u32 *)(id + 516);
	u16 oncs = *(u16 *)(id + 520);
	tg_printf("nvme_io: vid 0x%x nn 0x%x oncs 0x%x vwc 0x%x mdts 0x%x sqes 0x%x cqes 0x%x\n",
		  *(u16 *)id, nn, oncs, id[525], id[77], id[512], id[513]);
	if (nn < 1)
		tg_fail("no namespace");

	memset(id, 0, PAGE);
	memset(&e, 0, sizeof(e));
	e.cdw0 = A_IDENTIFY;
	e.nsid = 1;
	e.prp1 = (u64)id;
	admin_ok(&e, NULL, "identify namespace");
	nblocks = *(u64 *)id;
	u8 flbas = id[26] & 0xf;
	u32 lbaf = *(u32 *)(id + 128 + 4 * flbas);
	lbasz = 1u << ((lbaf >> 16) & 0xff);
	tg_printf("nvme_io: namespace 1 size 0x%lx lba format 0x%x of 0x%x data 0x%x meta 0x%x\n",
		  nblocks, flbas, id[25] + 1, lbasz, lbaf & 0xffff);
	if (lbasz != 512 && lbasz != 4096)
		tg_fail("LBA size 0x%x", lbasz);
	if (!(oncs & 4))
		tg_fail("no Dataset Management (ONCS 0x%x)", oncs);
}

/* Number of Queues, then nq CQ/SQ pairs of qsz entries, polled. */
static void create_queues(int want, u16 qsz)
{
	struct sqe e;
	u32 r;
	memset(&e, 0, sizeof(e));
	e.cdw0 = A_SET_FEATURES;
	e.cdw10 = FEAT_NUM_QUEUES;
	e.cdw11 = (u32)(want - 1) | (u32)(want - 1) << 16;
	admin_ok(&e, &r, "set features number of queues");
	u32 nsq = (r & 0xffff) + 1, ncq = (r >> 16) + 1;
	tg_printf("nvme_io: queues requested 0x%x granted sq 0x%x cq 0x%x\n", want, nsq, ncq);
	/* The pattern writes put up to 5 commands on one queue. */
	if (qsz < 8)
		tg_fail("queues of 0x%x entries: at least 8 needed", qsz);
	nq = want;
	if ((u32)nq > nsq)
		nq = (int)nsq;
	if ((u32)nq > ncq)
		nq = (int)ncq;
	for (int i = 0; i < nq; i++) {
		struct queue *q = &ioq[i];
		queue_init(q, (u16)(i + 1), qsz);
		memset(&e, 0, sizeof(e));
		e.cdw0 = A_CREATE_CQ;
		e.prp1 = (u64)q->cq;
		e.cdw10 = (u32)(qsz - 1) << 16 | q->id;
		e.cdw11 = 1; /* physically contiguous, no interrupts */
		admin_ok(&e, NULL, "create I/O CQ");
		memset(&e, 0, sizeof(e));
		e.cdw0 = A_CREATE_SQ;
		e.prp1 = (u64)q->sq;
		e.cdw10 = (u32)(qsz - 1) << 16 | q->id;
		e.cdw11 = (u32)q->id << 16 | 1;
		admin_ok(&e, NULL, "create I/O SQ");
	}
	tg_printf("nvme_io: 0x%x queue pairs of 0x%x entries\n", nq, qsz);
}

/* Controller reset to enabled with the admin queue. */
static void enable(void)
{
	wr32(R_CC, 0);
	u64 t0 = rdtsc();
	while (rd32(R_CSTS) & CSTS_RDY)
		if (rdtsc() - t0 > TIMEOUT)
			tg_fail("CSTS.RDY stays set after CC.EN = 0");
	queue_init(&admin, 0, ADMIN_QSZ);
	wr32(R_INTMS, ~0u);
	wr32(R_AQA, (ADMIN_QSZ - 1) | (ADMIN_QSZ - 1) << 16);
	mmio_write32(bar + R_ASQ, (u32)(u64)admin.sq);
	mmio_write32(bar + R_ASQ + 4, (u32)((u64)admin.sq >> 32));
	mmio_write32(bar + R_ACQ, (u32)(u64)admin.cq);
	mmio_write32(bar + R_ACQ + 4, (u32)((u64)admin.cq >> 32));
	wr32(R_CC, CC_EN | CC_IOQES);
	t0 = rdtsc();
	while (!(rd32(R_CSTS) & CSTS_RDY))
		if (rdtsc() - t0 > TIMEOUT || (rd32(R_CSTS) & CSTS_CFS))
			tg_fail("not ready after CC.EN = 1 (csts 0x%x)", rd32(R_CSTS));
	tg_printf("nvme_io: enabled\n");
}

/* Pattern writes in every shape (queue k % nq), the disk's last block
   too, then Flush on every queue and reads in other shapes. */
static void patterns(u8 *exp, u64 bytes)
{
	struct xfer w[NSHAPES + 1], r[NSHAPES + 1];
	u64 at[NSHAPES + 1];
	for (int k = 0; k <= NSHAPES; k++) {
		u32 len = k < NSHAPES ? shapes[k].len : lbasz;
		/* Without the offset, PRP1+PRP2 needs two whole pages. */
		if (k == 1 && lbasz != 512)
			len = 2 * PAGE;
		u32 off = k < NSHAPES && lbasz == 512 ? shapes[k].off : 0;
		u32 loff = k < NSHAPES ? shapes[k].list_off : 0;
		if (len < lbasz)
			len = lbasz;
		at[k] = k < NSHAPES ? PATTERN_AT + (u64)k * PATTERN_STRIDE : bytes - lbasz;
		xfer_init(&w[k], len, off, NULL, loff);
		for (u32 i = 0; i < len; i++)
			exp[at[k] + i] = *xbyte(&w[k], i) = pat(at[k] + i);
		io(&ioq[k % nq], IO_WRITE, (u16)k, at[k] / lbasz, len / lbasz, &w[k]);
	}
	for (int i = 0; i < nq; i++)
		ring(&ioq[i]);
	for (int i = 0; i < nq; i++) {
		u16 st[NSHAPES + 1];
		int n = 0;
		for (int k = i; k <= NSHAPES; k += nq)
			n++;
		/* cids i, i + nq, ...: collect wants a contiguous range. */
		for (int j = 0; j < n; j++) {
			struct cqe c;
			if (!reap(&ioq[i], &c, TIMEOUT))
				tg_fail("queue 0x%x: write timeout", ioq[i].id);
			if (c.sqid != ioq[i].id || c.cid % nq != i || c.cid > NSHAPES)
				tg_fail("queue 0x%x: unexpected cid 0x%x", ioq[i].id, c.cid);
			st[j] = status_of(&c);
			if (st[j])
				tg_fail("write %s: status 0x%x", c.cid < NSHAPES ? shapes[c.cid].name : "last",
					st[j]);
		}
		if (n)
			ack(&ioq[i]);
	}
	for (int k = 0; k <= NSHAPES; k++)
		tg_printf("nvme_io: write %s lba 0x%lx 0x%x blocks 0x%x pages queue 0x%x ok\n",
			  k < NSHAPES ? shapes[k].name : "last", at[k] / lbasz, w[k].len / lbasz,
			  w[k].npages, ioq[k % nq].id);
	for (int i = 0; i < nq; i++)
		if (io_one(&ioq[i], IO_FLUSH, 0, 0, NULL))
			tg_fail("flush on queue 0x%x failed", ioq[i].id);
	tg_printf("nvme_io: flush ok on every queue\n");
	/* Read back with the next shape's layout (same length). */
	for (int k = 0; k <= NSHAPES; k++) {
		int o = (k + 1) % NSHAPES;
		u32 off = k < NSHAPES && lbasz == 512 ? shapes[o].off : 0;
		xfer_init(&r[k], w[k].len, off, NULL, shapes[o].list_off);
		struct queue *q = &ioq[(k + 1) % nq];
		u16 st = io_one(q, IO_READ, at[k] / lbasz, w[k].len / lbasz, &r[k]);
		if (st)
			tg_fail("read back %s: status 0x%x", k < NSHAPES ? shapes[k].name : "last", st);
		for (u32 i = 0; i < w[k].len; i++)
			if (*xbyte(&r[k], i) != exp[at[k] + i])
				tg_fail("read back %s: byte 0x%x differs", k < NSHAPES ? shapes[k].name : "last",
					i);
	}
	tg_printf("nvme_io: read back every shape as written\n");
}

/* qsz - 1 reads outstanding on the first queue, rounds times: the
   completion queue wraps and its phase flips. */
static void full_queue(const u8 *exp, int rounds)
{
	struct queue *q = &ioq[0];
	int n = q->size - 1, wraps0 = q->wraps;
	u8 *buf = tg_alloc((u64)n * PAGE, PAGE);
	static struct xfer x[4096];
	static u16 st[4096];
	for (int r = 0; r < rounds; r++) {
		memset(buf, 0, (u64)n * PAGE);
		for (int i = 0; i < n; i++) {
			xfer_init(&x[i], PAGE, 0, buf + (u64)i * PAGE, 0);
			u64 at = PATTERN_AT + ((u64)(i + r) * PAGE) % (NSHAPES * PATTERN_STRIDE);
			io(q, IO_READ, (u16)(0x100 + i), at / lbasz, PAGE / lbasz, &x[i]);
		}
		ring(q);
		collect(q, 0x100, n, st);
		for (int i = 0; i < n; i++) {
			u64 at = PATTERN_AT + ((u64)(i + r) * PAGE) % (NSHAPES * PATTERN_STRIDE);
			if (st[i] || memcmp(buf + (u64)i * PAGE, exp + at, PAGE))
				tg_fail("full queue: read 0x%x of round 0x%x: status 0x%x or wrong data", i,
					r, st[i]);
		}
	}
	tg_printf("nvme_io: full queue 0x%x: 0x%x commands outstanding 0x%x times, cq phase "
		  "wrapped 0x%x times\n",
		  q->id, n, rounds, q->wraps - wraps0);
	if (q->wraps == wraps0)
		tg_fail("the completion queue never wrapped");
}

static void deallocate(void)
{
	u32 *range = tg_alloc(PAGE, PAGE);
	range[0] = 0;
	range[1] = (u32)(DEALLOC_BYTES / lbasz);
	*(u64 *)&range[2] = DEALLOC_AT / lbasz;
	struct xfer x;
	xfer_init(&x, PAGE, 0, (u8 *)range, 0);
	struct queue *q = &ioq[nq - 1];
	struct sqe e;
	memset(&e, 0, sizeof(e));
	e.cdw0 = IO_DSM | 9u << 16;
	e.nsid = 1;
	prps(&x, &e);
	e.cdw10 = 0;      /* one range */
	e.cdw11 = 1 << 2; /* AD: deallocate */
	submit(q, &e);
	ring(q);
	u16 st;
	collect(q, 9, 1, &st);
	if (st)
		tg_fail("deallocate: status 0x%x", st);
	tg_printf("nvme_io: deallocate lba 0x%lx 0x%lx blocks ok\n", DEALLOC_AT / lbasz,
		  DEALLOC_BYTES / lbasz);
	if (io_one(q, IO_FLUSH, 0, 0, NULL))
		tg_fail("flush failed");
}

/* Bad PRPs complete with an error status, and the queue still works. */
static void bad_prps(const u8 *exp)
{
	static const char *names[] = { "prp1 outside ram", "prp list entry outside ram",
				       "prp list outside ram" };
	struct queue *q = &ioq[0];
	for (int c = 0; c < 3; c++) {
		struct xfer x;
		struct sqe e;
		u32 len = c == 0 ? PAGE : 4 * PAGE;
		xfer_init(&x, len, 0, NULL, 0);
		memset(&e, 0, sizeof(e));
		e.cdw0 = IO_READ | 0x55u << 16;
		e.nsid = 1;
		prps(&x, &e);
		if (c == 0)
			e.prp1 = 1ul << 44;
		else if (c == 1)
			x.list[2] = 1ul << 44;
		else
			e.prp2 = 1ul << 44;
		e.cdw10 = (u32)(PATTERN_AT / lbasz);
		e.cdw12 = len / lbasz - 1;
		submit(q, &e);
		ring(q);
		u16 st;
		collect(q, 0x55, 1, &st);
		/* QEMU completes them successfully (DMA to nowhere is dropped):
		   the test decides what is acceptable. */
		tg_printf("nvme_io: %s: status 0x%x\n", names[c], st);
	}
	struct xfer x;
	xfer_init(&x, PAGE, 0, NULL, 0);
	if (io_one(q, IO_READ, PATTERN_AT / lbasz, PAGE / lbasz, &x) ||
	    memcmp(x.page[0], exp + PATTERN_AT, PAGE))
		tg_fail("read after bad PRPs failed");
	tg_printf("nvme_io: reads after bad prps\n");
}

static void teardown(void)
{
	struct sqe e;
	for (int i = 0; i < nq; i++) {
		memset(&e, 0, sizeof(e));
		e.cdw0 = A_DELETE_SQ;
		e.cdw10 = ioq[i].id;
		admin_ok(&e, NULL, "delete I/O SQ");
		memset(&e, 0, sizeof(e));
		e.cdw0 = A_DELETE_CQ;
		e.cdw10 = ioq[i].id;
		admin_ok(&e, NULL, "delete I/O CQ");
	}
	tg_printf("nvme_io: deleted 0x%x queue pairs\n", nq);
	wr32(R_CC, CC_EN | CC_IOQES | CC_SHN_NORMAL);
	u64 t0 = rdtsc();
	while ((rd32(R_CSTS) & (3u << 2)) != CSTS_SHST_DONE)
		if (rdtsc() - t0 > TIMEOUT)
			tg_fail("shutdown not complete (csts 0x%x)", rd32(R_CSTS));
	tg_printf("nvme_io: shutdown complete\n");
}

static u64 rng = 0x9e3779b97f4a7c15ul;
static u64 next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* 4 KiB reads at random aligned offsets on the first queue, depth in
   flight; each batch of completions is refilled with one doorbell. */
static void bench(const char *name, int depth, u64 reqs)
{
	struct queue *q = &ioq[0];
	u8 *buf = tg_alloc((u64)depth * PAGE, PAGE);
	u64 pages = nblocks * lbasz / PAGE, issued = 0, done = 0, kicks0 = kicks;
	u32 nlb = PAGE / lbasz;
	struct sqe e;
	memset(&e, 0, sizeof(e));
	e.nsid = 1;
	e.cdw12 = nlb - 1;
	u64 t0 = rdtsc();
	int free_slots = depth;
	while (done < reqs) {
		int n = 0;
		for (; free_slots > 0 && issued < reqs; free_slots--, n++, issued++) {
			u16 slot = (u16)(issued % (u64)depth);
			u64 slba = (next_rand() % pages) * nlb;
			e.cdw0 = IO_READ | (u32)slot << 16;
			e.prp1 = (u64)buf + (u64)slot * PAGE;
			e.cdw10 = (u32)slba;
			e.cdw11 = (u32)(slba >> 32);
			submit(q, &e);
		}
		if (n)
			ring(q);
		struct cqe c;
		if (!reap(q, &c, TIMEOUT))
			tg_fail("bench: timeout");
		do {
			if (status_of(&c))
				tg_fail("bench: status 0x%x", status_of(&c));
			done++;
			free_slots++;
		} while (reap(q, &c, 0));
		ack(q);
	}
	u64 cycles = rdtsc() - t0;
	tg_printf("BENCH %s %lu req %lu bytes %lu tsc %lu kicks\n", name, reqs, reqs * PAGE, cycles,
		  kicks - kicks0);
}

int main(void)
{
	tg_name = "nvme_io";
	int bench_mode = (int)tg_opt_u64("bench", 0);
	u64 reqs = tg_opt_u64("reqs", 2000);
	u64 want = tg_opt_u64("queues", 4), qsz = tg_opt_u64("qsz", 64);
	if (want < 1 || want > MAXQ || qsz < 8 || qsz > 4096)
		tg_fail("queues=1-16 and qsz=8-4096");
	struct pci_fn f;
	if (!pci_find_class(0x010802, 0, &f))
		tg_fail("no NVMe function (class 01/08/02)");
	tg_printf("nvme_io: function 0x%x 0x%x id %x:%x\n", f.slot, f.func, f.vendor, f.device);
	pci_enable(&f);
	bar = pci_bar(&f, 0);
	if (!bar || pci_bar_is_io(&f, 0))
		tg_fail("no memory BAR 0");
	u64 cap = rd64(R_CAP);
	u32 mqes = (u32)(cap & 0xffff) + 1;
	stride = 4u << ((cap >> 32) & 0xf);
	tg_printf("nvme_io: version 0x%x mqes 0x%x dstrd 0x%lx css 0x%lx mpsmin 0x%lx\n", rd32(R_VS),
		  mqes, (cap >> 32) & 0xf, (cap >> 37) & 0xff, (cap >> 48) & 0xf);
	if (((cap >> 48) & 0xf) != 0)
		tg_fail("4 KiB pages unsupported");
	if (qsz > mqes)
		qsz = mqes;
	enable();
	identify();
	u64 bytes = nblocks * lbasz;
	if (bench_mode) {
		create_queues(1, (u16)(qsz < 64 ? qsz : 64));
		/* 32 in flight need 33 entries. */
		if (ioq[0].size < 33)
			tg_fail("bench: queue of 0x%x entries", ioq[0].size);
		bench("randread-4k-qd1", 1, reqs);
		bench("randread-4k-qd32", 32, reqs);
		tg_printf("nvme_io: done\n");
		return EXIT_PASS;
	}
	if (bytes < MIN_BYTES || bytes > MAX_BYTES)
		tg_fail("namespace of 0x%lx bytes, want 8-64 MiB", bytes);
	create_queues((int)want, (u16)qsz);

	u8 *exp = tg_alloc(bytes, PAGE), *got = tg_alloc(bytes, PAGE);
	whole_disk(exp, bytes);
	tg_printf("nvme_io: read 0x%lx blocks fnv1a 0x%x\n", nblocks, tg_fnv1a(exp, bytes));
	patterns(exp, bytes);
	full_queue(exp, 3);
	deallocate();
	whole_disk(got, bytes);
	int zero = 1, kept = 1;
	for (u64 i = DEALLOC_AT; i < DEALLOC_AT + DEALLOC_BYTES; i++) {
		zero &= got[i] == 0;
		kept &= got[i] == exp[i];
	}
	if (!zero && !kept)
		tg_fail("deallocated range reads neither zero nor the old data");
	tg_printf("nvme_io: deallocated range %s\n", zero ? "reads zero" : "keeps its data");
	if (zero)
		memset(exp + DEALLOC_AT, 0, DEALLOC_BYTES);
	for (u64 i = 0; i < bytes; i++)
		if (got[i] != exp[i])
			tg_fail("read back byte 0x%lx is 0x%x, expected 0x%x", i, got[i], exp[i]);
	tg_printf("nvme_io: read back 0x%lx blocks fnv1a 0x%x as expected\n", nblocks,
		  tg_fnv1a(got, bytes));
	bad_prps(exp);
	teardown();
	tg_printf("nvme_io: done\n");
	return EXIT_PASS;
}
