/*
 * tg.c: the C test guests' runtime: start-up from PVH, COM1 output,
 * exit, the command line, the heap, page mapping and libc basics.
 */
#include <stdarg.h>

#include "tg.h"

#define COM1 0x3f8
#define COM1_LSR 0x3fd
#define LSR_THRE 0x20
#define DEBUG_EXIT_PORT 0xf4
#define HVM_START_MAGIC 0x336ec578
#define E820_RAM 1

#define HEAP_BASE (16ul << 20)
#define HEAP_MIN (48ul << 20)
/* The heap stays below the PCI hole (bhyve and QEMU keep 3 GiB+ for it). */
#define HEAP_CEILING (3ul << 30)

const char *tg_name = "guest";

static char cmdline[1024];
static u64 heap_next = HEAP_BASE, heap_end = HEAP_BASE + HEAP_MIN;

/* hvm_start_info (version 1), as the PVH boot ABI lays it out. */
struct start_info {
	u32 magic, version, flags, nr_modules;
	u64 modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	u32 memmap_entries, reserved;
};
struct memmap_entry {
	u64 addr, size;
	u32 type, reserved;
};

/* The RAM entry holding HEAP_BASE bounds the heap; without a memory map
   (version 0) the minimum is assumed. */
static void heap_from_memmap(const struct start_info *si)
{
	if (si->version < 1 || si->memmap_paddr == 0 || si->memmap_paddr >= HEAP_CEILING)
		return;
	const struct memmap_entry *m = (const void *)si->memmap_paddr;
	for (u32 i = 0; i < si->memmap_entries && i < 128; i++) {
		if (m[i].type != E820_RAM || m[i].addr > HEAP_BASE || m[i].addr + m[i].size <= HEAP_BASE)
			continue;
		u64 end = m[i].addr + m[i].size;
		heap_end = end < HEAP_CEILING ? end : HEAP_CEILING;
		return;
	}
	heap_end = HEAP_BASE;
}

/* Called by crt64.S at CPL3 with the PVH start_info pointer. The command
   line is copied first: the heap may overlap where the loader put it. */
_Noreturn void tg_start(u64 start_info);
_Noreturn void tg_start(u64 start_info)
{
	const struct start_info *si = (const void *)start_info;
	if (start_info == 0 || start_info >= HEAP_CEILING || si->magic != HVM_START_MAGIC) {
		tg_printf("tg: bad hvm_start_info\n");
		tg_exit(EXIT_FAIL);
	}
	if (si->cmdline_paddr != 0 && si->cmdline_paddr < HEAP_CEILING) {
		const char *c = (const char *)si->cmdline_paddr;
		u64 i = 0;
		for (; c[i] && i < sizeof(cmdline) - 1; i++)
			cmdline[i] = c[i];
		cmdline[i] = 0;
	}
	heap_from_memmap(si);
	if (heap_end - HEAP_BASE < HEAP_MIN) {
		tg_printf("tg: less than 48 MiB of RAM from 16 MiB\n");
		tg_exit(EXIT_FAIL);
	}
	tg_exit((u32)main());
}

/* --- output --------------------------------------------------------------- */

static void putc_com1(char c)
{
	while (!(inb(COM1_LSR) & LSR_THRE))
		;
	outb(COM1, (u8)c);
}

static void put_num(u64 v, unsigned base, int neg, int width, char pad)
{
	char buf[24];
	int n = 0;
	do {
		buf[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (neg)
		width--;
	if (neg && pad == '0')
		putc_com1('-');
	for (int i = n; i < width; i++)
		putc_com1(pad);
	if (neg && pad != '0')
		putc_com1('-');
	while (n)
		putc_com1(buf[--n]);
}

static void vprint(const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			putc_com1(*fmt);
			continue;
		}
		fmt++;
		char pad = ' ';
		int width = 0, longs = 0;
		if (*fmt == '0') {
			pad = '0';
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l') {
			longs++;
			fmt++;
		}
		switch (*fmt) {
		case 's': {
			const char *s = va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			int len = (int)strlen(s);
			for (int i = len; i < width; i++)
				putc_com1(' ');
			while (*s)
				putc_com1(*s++);
			break;
		}
		case 'c':
			putc_com1((char)va_arg(ap, int));
			break;
		case 'd': {
			s64 v = longs ? va_arg(ap, s64) : va_arg(ap, int);
			put_num(v < 0 ? -(u64)v : (u64)v, 10, v < 0, width, pad);
			break;
		}
		case 'u':
			put_num(longs ? va_arg(ap, u64) : va_arg(ap, unsigned), 10, 0, width, pad);
			break;
		case 'x':
			put_num(longs ? va_arg(ap, u64) : va_arg(ap, unsigned), 16, 0, width, pad);
			break;
		case 'p':
			putc_com1('0');
			putc_com1('x');
			put_num((u64)va_arg(ap, void *), 16, 0, width, pad);
			break;
		case '%':
			putc_com1('%');
			break;
		case 0:
			return;
		default:
			putc_com1('%');
			putc_com1(*fmt);
		}
	}
}

void tg_printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprint(fmt, ap);
	va_end(ap);
}

_Noreturn void tg_exit(u32 v)
{
	outl(DEBUG_EXIT_PORT, v);
	/* No debug-exit device: fault (no IDT → triple fault) rather than
	   spin until a test's deadline. */
	for (;;)
		__asm__ volatile("ud2");
}

_Noreturn void tg_fail(const char *fmt, ...)
{
	va_list ap;
	tg_printf("%s: ", tg_name);
	va_start(ap, fmt);
	vprint(fmt, ap);
	va_end(ap);
	putc_com1('\n');
	tg_exit(EXIT_FAIL);
}

/* --- command line --------------------------------------------------------- */

const char *tg_cmdline(void)
{
	return cmdline;
}

int tg_opt(const char *key, char *out, int outlen)
{
	u64 klen = strlen(key);
	const char *p = cmdline;
	while (*p) {
		while (*p == ' ')
			p++;
		const char *word = p;
		while (*p && *p != ' ')
			p++;
		if ((u64)(p - word) > klen && strncmp(word, key, klen) == 0 && word[klen] == '=') {
			const char *v = word + klen + 1;
			int n = 0;
			while (v + n < p && n < outlen - 1) {
				out[n] = v[n];
				n++;
			}
			if (outlen > 0)
				out[n] = 0;
			return 1;
		}
	}
	return 0;
}

u64 tg_opt_u64(const char *key, u64 dflt)
{
	char v[32];
	if (!tg_opt(key, v, sizeof(v)) || !v[0])
		return dflt;
	u64 r = 0;
	const char *p = v;
	unsigned base = 10;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	for (; *p; p++) {
		unsigned d;
		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a' + 10);
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			d = (unsigned)(*p - 'A' + 10);
		else
			return dflt;
		r = r * base + d;
	}
	return r;
}

/* --- time ----------------------------------------------------------------- */

u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}

void tg_delay_tsc(u64 ticks)
{
	u64 t0 = rdtsc();
	while (rdtsc() - t0 < ticks)
		__asm__ volatile("pause");
}

/* --- libc basics (gcc may call these) -------------------------------------- */

void *memcpy(void *dst, const void *src, u64 n)
{
	void *d = dst;
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
	return dst;
}

void *memset(void *dst, int c, u64 n)
{
	void *d = dst;
	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return dst;
}

int memcmp(const void *a, const void *b, u64 n)
{
	const u8 *x = a, *y = b;
	for (u64 i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

u64 strlen(const char *s)
{
	u64 n = 0;
	while (s[n])
		n++;
	return n;
}

int strncmp(const char *a, const char *b, u64 n)
{
	for (u64 i = 0; i < n; i++) {
		if (a[i] != b[i])
			return (u8)a[i] < (u8)b[i] ? -1 : 1;
		if (!a[i])
			return 0;
	}
	return 0;
}

int strcmp(const char *a, const char *b)
{
	return strncmp(a, b, ~0ul);
}

u32 tg_fnv1a_more(u32 h, const void *p, u64 len)
{
	const u8 *b = p;
	for (u64 i = 0; i < len; i++)
		h = (h ^ b[i]) * 0x01000193u;
	return h;
}

u32 tg_fnv1a(const void *p, u64 len)
{
	return tg_fnv1a_more(0x811c9dc5u, p, len);
}

/* --- memory --------------------------------------------------------------- */

void *tg_alloc(u64 bytes, u64 align)
{
	if (align < 1)
		align = 1;
	u64 at = (heap_next + align - 1) & ~(align - 1);
	if (at < heap_next || at > heap_end || bytes > heap_end - at)
		tg_fail("tg_alloc: heap exhausted (0x%lx bytes wanted)", bytes);
	heap_next = at + bytes;
	return memset((void *)at, 0, bytes);
}

/* crt64.S's tables; more pages for tg_map come from a pool. */
extern u64 tg_pml4[512];
#define PT_POOL 32
static u64 pt_pool[PT_POOL][512] __attribute__((aligned(4096)));
static int pt_used;

#define PTE_P 1ul
#define PTE_RW 2ul
#define PTE_US 4ul
#define PTE_PS 0x80ul
#define PTE_ADDR 0x000ffffffffff000ul

/* The table the entry points to, taken from the pool if not present. */
static u64 *next_table(u64 *entry)
{
	if (!(*entry & PTE_P)) {
		if (pt_used == PT_POOL)
			tg_fail("tg_map: out of page-table pages");
		u64 *t = pt_pool[pt_used++];
		*entry = (u64)t | PTE_P | PTE_RW | PTE_US;
	}
	return (u64 *)(*entry & PTE_ADDR);
}

void tg_map(u64 addr, u64 len)
{
	if (len == 0)
		return;
	u64 end = addr + len;
	if (end < addr || end > (1ul << 47))
		tg_fail("tg_map: 0x%lx+0x%lx out of range", addr, len);
	for (u64 a = addr & ~((2ul << 20) - 1); a < end; a += 2ul << 20) {
		u64 *pdpt = next_table(&tg_pml4[(a >> 39) & 511]);
		u64 *pd = next_table(&pdpt[(a >> 30) & 511]);
		u64 *pde = &pd[(a >> 21) & 511];
		if (!(*pde & PTE_P))
			*pde = a | PTE_P | PTE_RW | PTE_US | PTE_PS;
	}
	tg_mb();
}
