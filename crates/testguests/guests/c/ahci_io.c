/*
 * ahci_io: an AHCI HBA (class 01/06/01) driven as a polled driver would:
 * HBA reset, AHCI mode, every implemented port with a device started;
 * SATA disks get IDENTIFY, a whole-disk read, 32 NCQ writes and reads
 * outstanding at once, FLUSH CACHE EXT, DATA SET MANAGEMENT TRIM, a
 * checked read-back and bad PRDTs; ATAPI drives get IDENTIFY PACKET
 * DEVICE, INQUIRY, READ CAPACITY and READ(10)s.
 * Command line: bench=1 reqs=N (the benchmark instead), badprdt=0.
 * The exact output is documented in src/lib.rs.
 */
#include "pci.h"
#include "tg.h"

#define CAP 0x00
#define GHC 0x04
#define PI 0x0c
#define VS 0x10
#define CAP_SNCQ (1u << 30)
#define CAP_SSS (1u << 27)
#define GHC_HR 1u
#define GHC_AE (1u << 31)

#define P_CLB 0x00
#define P_CLBU 0x04
#define P_FB 0x08
#define P_FBU 0x0c
#define P_IS 0x10
#define P_IE 0x14
#define P_CMD 0x18
#define P_TFD 0x20
#define P_SIG 0x24
#define P_SSTS 0x28
#define P_SERR 0x30
#define P_SACT 0x34
#define P_CI 0x38
#define CMD_ST 0x1u
#define CMD_SUD 0x2u
#define CMD_POD 0x4u
#define CMD_FRE 0x10u
#define CMD_FR 0x4000u
#define CMD_CR 0x8000u
#define CMD_ATAPI (1u << 24)
#define IS_SDBS 0x8u
#define IS_ERR 0x78000000u /* TFES | HBFS | HBDS | IFS */
#define TFD_ERR 0x01u
#define TFD_DRQ 0x08u
#define TFD_BSY 0x80u
#define SIG_ATA 0x00000101u
#define SIG_ATAPI 0xeb140101u

#define ATA_READ_DMA_EXT 0x25
#define ATA_WRITE_DMA_EXT 0x35
#define ATA_READ_FPDMA 0x60
#define ATA_WRITE_FPDMA 0x61
#define ATA_DSM 0x06
#define ATA_FLUSH_EXT 0xea
#define ATA_IDENTIFY 0xec
#define ATA_PACKET 0xa0
#define ATA_IDENTIFY_PACKET 0xa1

#define SECTOR 512u
#define MAX_PRDS 16
#define CT_BYTES (0x80 + MAX_PRDS * 16)
#define TIMEOUT (1ul << 33)       /* TSC ticks per command (seconds) */
#define LINK_TIMEOUT (1ul << 26)  /* an empty port answers at once */
/* The disk layout the test knows (512-byte sectors). */
#define MIN_SECTORS 0x4000ul      /* 8 MiB */
#define MAX_SECTORS 0x20000ul     /* 64 MiB: the guest keeps a copy */
#define NCQ_AT 0x800ul
#define NCQ_STRIDE 0x40ul
#define TRIM1 0x2000ul
#define TRIM2 0x3000ul
#define TRIM_SECTORS 0x800u
#define CHUNK_SECTORS 128u        /* 64 KiB per read-back command */

struct cmd_hdr {
	u32 dw0, prdbc, ctba, ctbau, rsvd[4];
};
struct prd {
	u32 dba, dbau, rsvd, dbc;
};
struct seg {
	u8 *addr;
	u32 len;
};

struct port {
	int num;
	u64 regs;
	volatile struct cmd_hdr *cl;
	volatile u8 *fis;
	u8 *ct[32];
	int slots;
	u64 sectors;
	int depth, trim;
	u64 kicks;
};

static u64 abar;

static u32 rd(struct port *p, u32 off) { return mmio_read32(p->regs + off); }
static void wr(struct port *p, u32 off, u32 v) { mmio_write32(p->regs + off, v); }

/* Polls until (reg & mask) == want: 1, or 0 after timeout ticks. */
static int wait_reg(u64 addr, u32 mask, u32 want, u64 timeout)
{
	u64 t0 = rdtsc();
	while ((mmio_read32(addr) & mask) != want)
		if (rdtsc() - t0 > timeout)
			return 0;
	return 1;
}

/* The byte the test expects at disk offset o after a pattern write
   (lib.rs ahci_io_pattern). */
static u8 pat(u64 o)
{
	u32 x = (u32)(o >> 9) * 2654435761u + (u32)(o & 511) * 0x01000193u;
	return (u8)(x >> 24) ^ 0x5a;
}

static void fis_h2d(u8 *f, u8 cmd, u16 feat, u64 lba, u16 count, u8 dev)
{
	memset(f, 0, 20);
	f[0] = 0x27;
	f[1] = 0x80;
	f[2] = cmd;
	f[3] = (u8)feat;
	f[4] = (u8)lba;
	f[5] = (u8)(lba >> 8);
	f[6] = (u8)(lba >> 16);
	f[7] = dev;
	f[8] = (u8)(lba >> 24);
	f[9] = (u8)(lba >> 32);
	f[10] = (u8)(lba >> 40);
	f[11] = (u8)(feat >> 8);
	f[12] = (u8)count;
	f[13] = (u8)(count >> 8);
}

/* Fills slot's command table and header: the FIS, the ATAPI command
   (cdb, or NULL) and one PRD per segment. */
static void build(struct port *p, int slot, u8 cmd, u16 feat, u64 lba, u16 count, u8 dev,
		  int write, const u8 *cdb, const struct seg *s, int n)
{
	u8 *ct = p->ct[slot];
	if (n > MAX_PRDS)
		tg_fail("too many PRDs");
	memset(ct, 0, 0x80);
	fis_h2d(ct, cmd, feat, lba, count, dev);
	if (cdb)
		memcpy(ct + 0x40, cdb, 12);
	struct prd *prd = (struct prd *)(ct + 0x80);
	for (int i = 0; i < n; i++) {
		prd[i].dba = (u32)(u64)s[i].addr;
		prd[i].dbau = (u32)((u64)s[i].addr >> 32);
		prd[i].rsvd = 0;
		prd[i].dbc = (s[i].len - 1) & 0x3fffff;
	}
	p->cl[slot].dw0 = 5u | (cdb ? 1u << 5 : 0) | (write ? 1u << 6 : 0) | ((u32)n << 16);
	p->cl[slot].prdbc = 0;
	p->cl[slot].ctba = (u32)(u64)ct;
	p->cl[slot].ctbau = (u32)((u64)ct >> 32);
}

/* AHCI 6.2.2: after an error the port is stopped, its errors cleared
   and started again. */
static void port_recover(struct port *p)
{
	wr(p, P_CMD, rd(p, P_CMD) & ~CMD_ST);
	if (!wait_reg(p->regs + P_CMD, CMD_CR, 0, TIMEOUT))
		tg_fail("port 0x%x: CR stuck after clearing ST", p->num);
	wr(p, P_SERR, ~0u);
	wr(p, P_IS, ~0u);
	if (!wait_reg(p->regs + P_TFD, TFD_BSY | TFD_DRQ, 0, TIMEOUT))
		tg_fail("port 0x%x: busy after an error (tfd 0x%x)", p->num, rd(p, P_TFD));
	wr(p, P_CMD, rd(p, P_CMD) | CMD_ST);
}

/* Issues the slots in mask (NCQ ones also in PxSACT) and waits until
   the HBA is done with them: 0, the TFD of an error (port recovered),
   or -1 on timeout. */
static long issue_wait(struct port *p, u32 mask, int ncq)
{
	wr(p, P_IS, ~0u);
	if (ncq)
		wr(p, P_SACT, mask);
	wr(p, P_CI, mask);
	p->kicks += ncq ? 2 : 1;
	u64 t0 = rdtsc();
	for (;;) {
		u32 is = rd(p, P_IS);
		if (is & IS_ERR) {
			long tfd = rd(p, P_TFD);
			port_recover(p);
			return tfd ? tfd : is;
		}
		if (!(rd(p, P_CI) & mask) && (!ncq || !(rd(p, P_SACT) & mask))) {
			if (ncq && !(is & IS_SDBS) && !(rd(p, P_IS) & IS_SDBS))
				tg_fail("port 0x%x: NCQ commands completed without an SDB FIS", p->num);
			u32 tfd = rd(p, P_TFD);
			if (tfd & TFD_ERR) {
				port_recover(p);
				return tfd;
			}
			return 0;
		}
		if (rdtsc() - t0 > TIMEOUT) {
			port_recover(p);
			return -1;
		}
	}
}

static long one(struct port *p, u8 cmd, u16 feat, u64 lba, u16 count, int write, void *buf,
		u32 len)
{
	struct seg s = { buf, len };
	build(p, 0, cmd, feat, lba, count, 0x40, write, NULL, &s, len ? 1 : 0);
	return issue_wait(p, 1, 0);
}

static void must(struct port *p, long r, const char *what)
{
	if (r)
		tg_fail("port 0x%x: %s failed: %s 0x%lx", p->num, what, r < 0 ? "timeout" : "tfd",
			r < 0 ? 0ul : (u64)r);
}

/* IDENTIFY's byte-swapped string of words [first, first + n), trailing
   spaces cut. */
static void ata_string(const u16 *w, int first, int n, char *out)
{
	int len = 0;
	for (int i = 0; i < n; i++) {
		out[len++] = (char)(w[first + i] >> 8);
		out[len++] = (char)w[first + i];
	}
	while (len && out[len - 1] == ' ')
		len--;
	out[len] = 0;
}

static void print_identity(struct port *p, const u16 *w)
{
	char s[48];
	ata_string(w, 27, 20, s);
	tg_printf("ahci_io: port 0x%x model %s\n", p->num, s);
	ata_string(w, 10, 10, s);
	tg_printf("ahci_io: port 0x%x serial %s\n", p->num, s);
	ata_string(w, 23, 4, s);
	tg_printf("ahci_io: port 0x%x firmware %s\n", p->num, s);
}

/* --- SATA disk ------------------------------------------------------------ */

/* Splits [buf, buf + len) into k segments of even length. */
static int split(u8 *buf, u32 len, int k, struct seg *s)
{
	u32 piece = (len / (u32)k) & ~1u, off = 0;
	for (int i = 0; i < k; i++) {
		s[i].addr = buf + off;
		s[i].len = i + 1 < k ? piece : len - off;
		off += s[i].len;
	}
	return k;
}

/* Queues n NCQ commands (tags 0..n-1) at once; lba/count per tag, each
   buffer split into shape(tag) PRDs. */
static long ncq_batch(struct port *p, int write, int n, const u64 *lba, const u32 *count,
		      u8 **buf, int shape_seed)
{
	u32 mask = 0;
	for (int t = 0; t < n; t++) {
		struct seg s[MAX_PRDS];
		int k = split(buf[t], count[t] * SECTOR, (t + shape_seed) % 4 + 1, s);
		build(p, t, write ? ATA_WRITE_FPDMA : ATA_READ_FPDMA, (u16)count[t], lba[t],
		      (u16)(t << 3), 0x40, write, NULL, s, k);
		mask |= 1u << t;
	}
	return issue_wait(p, mask, 1);
}

static void disk_identify(struct port *p)
{
	u16 *w = tg_alloc(512, 512);
	must(p, one(p, ATA_IDENTIFY, 0, 0, 0, 0, w, 512), "IDENTIFY");
	print_identity(p, w);
	int lba48 = (w[83] >> 10) & 1;
	p->sectors = lba48 ? (u64)w[100] | (u64)w[101] << 16 | (u64)w[102] << 32 | (u64)w[103] << 48
			   : (u64)w[60] | (u64)w[61] << 16;
	int ncq = (w[76] >> 8) & 1;
	p->depth = ncq ? (w[75] & 0x1f) + 1 : 0;
	p->trim = w[169] & 1;
	tg_printf("ahci_io: port 0x%x sectors 0x%lx lba48 %d ncq %d depth 0x%x trim %d\n", p->num,
		  p->sectors, lba48, ncq, p->depth, p->trim);
	if (!lba48 || !ncq)
		tg_fail("port 0x%x: LBA48 and NCQ required", p->num);
}

/* Reads [0, sectors) into dst with NCQ, depth commands of 64 KiB at a time. */
static void ncq_read_all(struct port *p, u8 *dst, int depth)
{
	u64 lba[32];
	u32 count[32];
	u8 *buf[32];
	for (u64 at = 0; at < p->sectors;) {
		int n = 0;
		for (; n < depth && at < p->sectors; n++) {
			u64 left = p->sectors - at;
			lba[n] = at;
			count[n] = left < CHUNK_SECTORS ? (u32)left : CHUNK_SECTORS;
			buf[n] = dst + at * SECTOR;
			at += count[n];
		}
		must(p, ncq_batch(p, 0, n, lba, count, buf, 2), "NCQ read");
	}
}

static void disk_bad_prdt(struct port *p, u8 *exp)
{
	static const char *names[] = { "empty", "short", "outside ram" };
	u8 *buf = tg_alloc(8 * SECTOR, 4096);
	for (int c = 0; c < 3; c++) {
		struct seg s = { buf, 8 * SECTOR };
		int n = 1;
		if (c == 0)
			n = 0;
		else if (c == 1)
			s.len = SECTOR;
		else
			s.addr = (u8 *)(1ul << 44);
		build(p, 0, ATA_READ_DMA_EXT, 0, 0, 8, 0x40, 0, NULL, &s, n);
		long r = issue_wait(p, 1, 0);
		if (r < 0)
			tg_fail("port 0x%x: bad prdt %s: timeout", p->num, names[c]);
		if (r)
			tg_printf("ahci_io: port 0x%x bad prdt %s: error tfd 0x%lx\n", p->num, names[c],
				  (u64)r);
		else
			tg_printf("ahci_io: port 0x%x bad prdt %s: ok prdbc 0x%x\n", p->num, names[c],
				  p->cl[0].prdbc);
	}
	/* The port still works. */
	memset(buf, 0, 8 * SECTOR);
	must(p, one(p, ATA_READ_DMA_EXT, 0, NCQ_AT, 8, 0, buf, 8 * SECTOR), "read after bad PRDTs");
	if (memcmp(buf, exp + NCQ_AT * SECTOR, 8 * SECTOR))
		tg_fail("port 0x%x: read after bad PRDTs: wrong data", p->num);
	tg_printf("ahci_io: port 0x%x reads after bad prdts\n", p->num);
}

static void disk(struct port *p, int badprdt)
{
	disk_identify(p);
	if (p->sectors < MIN_SECTORS || p->sectors > MAX_SECTORS)
		tg_fail("port 0x%x: disk of 0x%lx sectors, want 0x4000-0x20000", p->num, p->sectors);
	int depth = p->depth < p->slots ? p->depth : p->slots;
	u64 bytes = p->sectors * SECTOR;
	u8 *exp = tg_alloc(bytes, 4096), *got = tg_alloc(bytes, 4096);

	/* The whole disk, 64 KiB READ DMA EXT at a time. */
	for (u64 at = 0; at < p->sectors; at += CHUNK_SECTORS) {
		u64 n = p->sectors - at < CHUNK_SECTORS ? p->sectors - at : CHUNK_SECTORS;
		must(p, one(p, ATA_READ_DMA_EXT, 0, at, (u16)n, 0, exp + at * SECTOR, (u32)n * SECTOR),
		     "READ DMA EXT");
	}
	tg_printf("ahci_io: port 0x%x read 0x%lx sectors fnv1a 0x%x\n", p->num, p->sectors,
		  tg_fnv1a(exp, bytes));

	/* depth writes outstanding together, the last one at the disk's end;
	   buffers start 2 * tag bytes into a page and are split in 1-4 PRDs. */
	u64 lba[32];
	u32 count[32];
	u8 *buf[32];
	for (int t = 0; t < depth; t++) {
		count[t] = t + 1 < depth ? 1 + (u32)(t * 5) % 40 : 8;
		lba[t] = t + 1 < depth ? NCQ_AT + (u64)t * NCQ_STRIDE : p->sectors - 8;
		buf[t] = (u8 *)tg_alloc(count[t] * SECTOR + 4096, 4096) + 2 * t;
		for (u32 i = 0; i < count[t] * SECTOR; i++)
			buf[t][i] = pat(lba[t] * SECTOR + i);
		memcpy(exp + lba[t] * SECTOR, buf[t], count[t] * SECTOR);
	}
	must(p, ncq_batch(p, 1, depth, lba, count, buf, 0), "NCQ write");
	tg_printf("ahci_io: port 0x%x ncq write 0x%x commands outstanding ok\n", p->num, depth);
	must(p, one(p, ATA_FLUSH_EXT, 0, 0, 0, 0, NULL, 0), "FLUSH CACHE EXT");
	tg_printf("ahci_io: port 0x%x flush ok\n", p->num);
	for (int t = 0; t < depth; t++)
		buf[t] = (u8 *)tg_alloc(count[t] * SECTOR + 4096, 4096) + 4096 - 2 * t - 2;
	must(p, ncq_batch(p, 0, depth, lba, count, buf, 1), "NCQ read");
	for (int t = 0; t < depth; t++)
		if (memcmp(buf[t], exp + lba[t] * SECTOR, count[t] * SECTOR))
			tg_fail("port 0x%x: NCQ read of tag 0x%x: not what was written", p->num, t);
	tg_printf("ahci_io: port 0x%x ncq read 0x%x commands outstanding, data as written\n", p->num,
		  depth);

	if (p->trim) {
		u64 *range = tg_alloc(SECTOR, 4096);
		range[0] = TRIM1 | (u64)TRIM_SECTORS << 48;
		range[1] = TRIM2 | (u64)TRIM_SECTORS << 48;
		must(p, one(p, ATA_DSM, 1, 0, 1, 1, range, SECTOR), "DSM TRIM");
		tg_printf("ahci_io: port 0x%x trim sectors 0x%lx 0x%lx of 0x%x ok\n", p->num, TRIM1,
			  TRIM2, TRIM_SECTORS);
		must(p, one(p, ATA_FLUSH_EXT, 0, 0, 0, 0, NULL, 0), "FLUSH CACHE EXT");
		tg_printf("ahci_io: port 0x%x flush ok\n", p->num);
	} else {
		tg_printf("ahci_io: port 0x%x trim not supported\n", p->num);
	}

	ncq_read_all(p, got, depth);
	if (p->trim) {
		int zero = 1, kept = 1;
		for (int r = 0; r < 2; r++) {
			u64 o = (r ? TRIM2 : TRIM1) * SECTOR;
			for (u64 i = 0; i < TRIM_SECTORS * SECTOR; i++) {
				zero &= got[o + i] == 0;
				kept &= got[o + i] == exp[o + i];
			}
		}
		if (!zero && !kept)
			tg_fail("port 0x%x: trimmed ranges read neither zero nor the old data", p->num);
		tg_printf("ahci_io: port 0x%x trimmed ranges %s\n", p->num,
			  zero ? "read zero" : "keep their data");
		if (zero) {
			memset(exp + TRIM1 * SECTOR, 0, TRIM_SECTORS * SECTOR);
			memset(exp + TRIM2 * SECTOR, 0, TRIM_SECTORS * SECTOR);
		}
	}
	for (u64 i = 0; i < bytes; i++)
		if (got[i] != exp[i])
			tg_fail("port 0x%x: read back byte 0x%lx is 0x%x, expected 0x%x", p->num, i,
				got[i], exp[i]);
	tg_printf("ahci_io: port 0x%x ncq read back 0x%lx sectors fnv1a 0x%x as expected\n", p->num,
		  p->sectors, tg_fnv1a(got, bytes));
	if (badprdt)
		disk_bad_prdt(p, exp);
}

/* --- ATAPI ---------------------------------------------------------------- */

/* A PACKET command with DMA data-in to buf (len 0: none); retried while
   the drive reports UNIT ATTENTION (sense key 6). 0 or the TFD. */
static long packet(struct port *p, const u8 *cdb, void *buf, u32 len)
{
	long r = 0;
	for (int tries = 0; tries < 4; tries++) {
		struct seg s = { buf, len };
		build(p, 0, ATA_PACKET, len ? 1 : 0, 0, 0, 0, 0, cdb, &s, len ? 1 : 0);
		r = issue_wait(p, 1, 0);
		if (r <= 0 || ((r >> 12) & 0xf) != 6)
			return r;
	}
	return r;
}

/* REQUEST SENSE: key << 8 | asc. */
static u32 sense(struct port *p)
{
	u8 cdb[12] = { 0x03, 0, 0, 0, 18 };
	u8 *s = tg_alloc(18, 64);
	must(p, packet(p, cdb, s, 18), "REQUEST SENSE");
	return (u32)(s[2] & 0xf) << 8 | s[12];
}

static void atapi(struct port *p)
{
	u16 *w = tg_alloc(512, 512);
	must(p, one(p, ATA_IDENTIFY_PACKET, 0, 0, 0, 0, w, 512), "IDENTIFY PACKET DEVICE");
	print_identity(p, w);
	u8 tur[12] = { 0 };
	packet(p, tur, NULL, 0); /* may report the medium change once more */
	must(p, packet(p, tur, NULL, 0), "TEST UNIT READY");

	u8 inq[12] = { 0x12, 0, 0, 0, 36 };
	u8 *d = tg_alloc(36, 64);
	must(p, packet(p, inq, d, 36), "INQUIRY");
	char vendor[9], product[17];
	memcpy(vendor, d + 8, 8);
	memcpy(product, d + 16, 16);
	vendor[8] = product[16] = 0;
	for (int i = 7; i >= 0 && vendor[i] == ' '; i--)
		vendor[i] = 0;
	for (int i = 15; i >= 0 && product[i] == ' '; i--)
		product[i] = 0;
	tg_printf("ahci_io: port 0x%x inquiry type 0x%x removable %d vendor %s product %s\n", p->num,
		  d[0] & 0x1f, d[1] >> 7, vendor, product);

	u8 cap[12] = { 0x25 };
	u8 *c = tg_alloc(8, 64);
	must(p, packet(p, cap, c, 8), "READ CAPACITY");
	u32 last = (u32)c[0] << 24 | (u32)c[1] << 16 | (u32)c[2] << 8 | c[3];
	u32 bsize = (u32)c[4] << 24 | (u32)c[5] << 16 | (u32)c[6] << 8 | c[7];
	tg_printf("ahci_io: port 0x%x capacity 0x%x blocks of 0x%x bytes\n", p->num, last + 1, bsize);
	if (bsize != 2048 || last < 32)
		tg_fail("port 0x%x: want 2048-byte blocks and at least 33 of them", p->num);

	const u32 reads[3][2] = { { 0, 8 }, { 16, 1 }, { last - 3, 4 } };
	u8 *buf = tg_alloc(8 * 2048, 4096);
	for (int i = 0; i < 3; i++) {
		u32 lba = reads[i][0], n = reads[i][1];
		u8 r10[12] = { 0x28, 0, (u8)(lba >> 24), (u8)(lba >> 16), (u8)(lba >> 8), (u8)lba,
			       0, (u8)(n >> 8), (u8)n };
		memset(buf, 0, n * 2048);
		must(p, packet(p, r10, buf, n * 2048), "READ(10)");
		tg_printf("ahci_io: port 0x%x read lba 0x%x 0x%x blocks fnv1a 0x%x\n", p->num, lba, n,
			  tg_fnv1a(buf, n * 2048));
	}
	u8 past[12] = { 0x28, 0, (u8)((last + 1) >> 24), (u8)((last + 1) >> 16),
			(u8)((last + 1) >> 8), (u8)(last + 1), 0, 0, 1 };
	long r = packet(p, past, buf, 2048);
	if (r <= 0)
		tg_fail("port 0x%x: READ(10) past the end: %s", p->num, r ? "timeout" : "succeeded");
	u32 k = sense(p);
	tg_printf("ahci_io: port 0x%x read past the end: sense key 0x%x asc 0x%x\n", p->num, k >> 8,
		  k & 0xff);
}

/* --- HBA ------------------------------------------------------------------ */

/* Starts port n: 1 with a device, 0 if the port has none. */
static int port_start(struct port *p, int n, u32 cap)
{
	p->num = n;
	p->regs = abar + 0x100 + 0x80 * (u64)n;
	p->slots = (int)((cap >> 8) & 0x1f) + 1;
	wr(p, P_CMD, rd(p, P_CMD) & ~CMD_ST);
	if (!wait_reg(p->regs + P_CMD, CMD_CR, 0, TIMEOUT))
		tg_fail("port 0x%x: CR stuck", n);
	wr(p, P_CMD, rd(p, P_CMD) & ~CMD_FRE);
	if (!wait_reg(p->regs + P_CMD, CMD_FR, 0, TIMEOUT))
		tg_fail("port 0x%x: FR stuck", n);
	p->cl = tg_alloc(1024, 1024);
	p->fis = tg_alloc(256, 256);
	for (int s = 0; s < p->slots; s++)
		p->ct[s] = tg_alloc(CT_BYTES, 128);
	wr(p, P_CLB, (u32)(u64)p->cl);
	wr(p, P_CLBU, (u32)((u64)p->cl >> 32));
	wr(p, P_FB, (u32)(u64)p->fis);
	wr(p, P_FBU, (u32)((u64)p->fis >> 32));
	wr(p, P_SERR, ~0u);
	wr(p, P_IS, ~0u);
	wr(p, P_IE, 0);
	wr(p, P_CMD, rd(p, P_CMD) | CMD_FRE | CMD_POD | ((cap & CAP_SSS) ? CMD_SUD : 0));
	if (!wait_reg(p->regs + P_SSTS, 0xf, 3, LINK_TIMEOUT))
		return 0;
	wr(p, P_SERR, ~0u);
	if (!wait_reg(p->regs + P_TFD, TFD_BSY | TFD_DRQ, 0, TIMEOUT))
		tg_fail("port 0x%x: busy after spin-up (tfd 0x%x)", n, rd(p, P_TFD));
	wr(p, P_IS, ~0u);
	return 1;
}

static int popcount(u32 v)
{
	int n = 0;
	for (; v; v &= v - 1)
		n++;
	return n;
}

static u64 rng = 0x9e3779b97f4a7c15ul;
static u64 next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* 4 KiB NCQ reads at random aligned offsets, depth in flight: slots
   are refilled as PxSACT drops them. */
static void bench(struct port *p, const char *name, int depth, u64 reqs)
{
	u8 *buf = tg_alloc(32 * 4096ul, 4096);
	u64 blocks = p->sectors / 8, issued = 0, done = 0, kicks0 = p->kicks;
	for (int t = 0; t < depth; t++) {
		struct seg s = { buf + t * 4096ul, 4096 };
		build(p, t, ATA_READ_FPDMA, 8, 0, (u16)(t << 3), 0x40, 0, NULL, &s, 1);
	}
	u32 busy = 0;
	u64 t0 = rdtsc(), last = t0;
	while (done < reqs) {
		u32 mask = 0;
		for (int t = 0; t < depth && issued < reqs; t++) {
			if (busy & (1u << t))
				continue;
			u64 lba = (next_rand() % blocks) * 8;
			u8 *f = p->ct[t];
			f[4] = (u8)lba, f[5] = (u8)(lba >> 8), f[6] = (u8)(lba >> 16);
			f[8] = (u8)(lba >> 24), f[9] = (u8)(lba >> 32), f[10] = (u8)(lba >> 40);
			mask |= 1u << t;
			issued++;
		}
		if (mask) {
			wr(p, P_SACT, mask);
			wr(p, P_CI, mask);
			p->kicks += 2;
			busy |= mask;
		}
		u32 sact;
		while ((sact = rd(p, P_SACT)) == busy) {
			if (rdtsc() - last > TIMEOUT)
				tg_fail("bench: timeout, PxSACT 0x%x is 0x%x 0x%x", sact,
					rd(p, P_IS), rd(p, P_TFD));
		}
		last = rdtsc();
		done += (u64)popcount(busy & ~sact);
		busy &= sact;
	}
	u64 cycles = rdtsc() - t0;
	if (rd(p, P_IS) & IS_ERR)
		tg_fail("bench: error, PxIS 0x%x tfd 0x%x", rd(p, P_IS), rd(p, P_TFD));
	tg_printf("BENCH %s %lu req %lu bytes %lu tsc %lu kicks\n", name, reqs, reqs * 4096, cycles,
		  p->kicks - kicks0);
}

int main(void)
{
	tg_name = "ahci_io";
	int bench_mode = (int)tg_opt_u64("bench", 0);
	u64 reqs = tg_opt_u64("reqs", 2000);
	int badprdt = (int)tg_opt_u64("badprdt", 1);
	struct pci_fn f;
	if (!pci_find_class(0x010601, 0, &f))
		tg_fail("no AHCI function (class 01/06/01)");
	tg_printf("ahci_io: function 0x%x 0x%x id %x:%x\n", f.slot, f.func, f.vendor, f.device);
	pci_enable(&f);
	abar = pci_bar(&f, 5);
	if (!abar || pci_bar_is_io(&f, 5))
		tg_fail("no ABAR (BAR 5)");

	mmio_write32(abar + GHC, GHC_AE);
	mmio_write32(abar + GHC, GHC_AE | GHC_HR);
	if (!wait_reg(abar + GHC, GHC_HR, 0, TIMEOUT))
		tg_fail("GHC.HR stuck");
	mmio_write32(abar + GHC, GHC_AE);
	u32 cap = mmio_read32(abar + CAP), pi = mmio_read32(abar + PI);
	tg_printf("ahci_io: version 0x%x ports 0x%x slots 0x%x ncq %d pi 0x%x\n",
		  mmio_read32(abar + VS), (cap & 0x1f) + 1, ((cap >> 8) & 0x1f) + 1,
		  (cap & CAP_SNCQ) ? 1 : 0, pi);
	if (!(mmio_read32(abar + GHC) & GHC_AE))
		tg_fail("GHC.AE does not stay set");

	int passed = 0;
	for (int n = 0; n < 32; n++) {
		if (!(pi & (1u << n)))
			continue;
		struct port *p = tg_alloc(sizeof(*p), 8);
		if (!port_start(p, n, cap))
			continue;
		u32 sig = rd(p, P_SIG);
		int is_atapi = sig == SIG_ATAPI;
		if (sig != SIG_ATA && !is_atapi)
			tg_fail("port 0x%x: signature 0x%x", n, sig);
		if (is_atapi)
			wr(p, P_CMD, rd(p, P_CMD) | CMD_ATAPI);
		wr(p, P_CMD, rd(p, P_CMD) | CMD_ST);
		if (bench_mode) {
			if (is_atapi)
				continue;
			disk_identify(p);
			int depth = p->depth < p->slots ? p->depth : p->slots;
			if (depth < 32)
				tg_fail("bench: NCQ depth 0x%x", depth);
			tg_printf("ahci_io: bench port 0x%x\n", n);
			bench(p, "randread-4k-qd1", 1, reqs);
			bench(p, "randread-4k-qd32", 32, reqs);
			tg_printf("ahci_io: done\n");
			return EXIT_PASS;
		}
		tg_printf("ahci_io: port 0x%x %s sig 0x%x\n", n, is_atapi ? "atapi" : "disk", sig);
		if (is_atapi)
			atapi(p);
		else
			disk(p, badprdt);
		passed++;
	}
	if (!passed)
		tg_fail("no port with a device");
	tg_printf("ahci_io: 0x%x ports passed\n", passed);
	tg_printf("ahci_io: done\n");
	return EXIT_PASS;
}
