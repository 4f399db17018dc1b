/*
 * tg.h: the runtime of the C test guests (freestanding, CPL3, one CPU).
 * crt64.S enters tg_start at CPL3 with IOPL 3; tg_start runs main and
 * passes its return value to tg_exit.
 */
#ifndef TG_H
#define TG_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef signed char s8;
typedef short s16;
typedef int s32;
typedef long s64;

#define NULL ((void *)0)

/* isa-debug-exit values: the VMM exits with (v << 1) | 1. */
#define EXIT_PASS 0x10
#define EXIT_FAIL 0x11
#define EXIT_BAD_CMDLINE 0x13

int main(void);

/* The guest's name, prefixed to tg_fail's message; set by main. */
extern const char *tg_name;

/* To COM1. Conversions: %s %c %d %u %x %lx %lu %ld %p (and %ld/%lu/%lx
   with ll), an optional '0' flag and width; %x is plain lowercase hex
   without 0x, %p is 0x + hex. */
void tg_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Writes v to isa-debug-exit; if the VMM ignores it, faults (no IDT:
   a triple fault). */
_Noreturn void tg_exit(u32 v);
/* "<tg_name>: " + message + "\n", then tg_exit(EXIT_FAIL). */
_Noreturn void tg_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "key=value" words of the PVH command line: copies value (NUL
   terminated, cut to outlen - 1) and returns 1 if key is present. */
int tg_opt(const char *key, char *out, int outlen);
/* The number after key= (decimal, or hex with 0x), else dflt. */
u64 tg_opt_u64(const char *key, u64 dflt);
/* The whole command line ("" without one). */
const char *tg_cmdline(void);

u64 rdtsc(void);
void tg_delay_tsc(u64 ticks);

void *memcpy(void *dst, const void *src, u64 n);
void *memset(void *dst, int c, u64 n);
int memcmp(const void *a, const void *b, u64 n);
u64 strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, u64 n);

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline u16 inw(u16 port)
{
	u16 v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline u32 inl(u16 port)
{
	u32 v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

/* One access of exactly that width (the asm keeps gcc from splitting
   or merging it). */
static inline u8 mmio_read8(u64 a)
{
	u8 v;
	__asm__ volatile("movb (%1), %0" : "=q"(v) : "r"(a) : "memory");
	return v;
}
static inline u16 mmio_read16(u64 a)
{
	u16 v;
	__asm__ volatile("movw (%1), %0" : "=r"(v) : "r"(a) : "memory");
	return v;
}
static inline u32 mmio_read32(u64 a)
{
	u32 v;
	__asm__ volatile("movl (%1), %0" : "=r"(v) : "r"(a) : "memory");
	return v;
}
static inline u64 mmio_read64(u64 a)
{
	u64 v;
	__asm__ volatile("movq (%1), %0" : "=r"(v) : "r"(a) : "memory");
	return v;
}
static inline void mmio_write8(u64 a, u8 v) { __asm__ volatile("movb %0, (%1)" : : "q"(v), "r"(a) : "memory"); }
static inline void mmio_write16(u64 a, u16 v) { __asm__ volatile("movw %0, (%1)" : : "r"(v), "r"(a) : "memory"); }
static inline void mmio_write32(u64 a, u32 v) { __asm__ volatile("movl %0, (%1)" : : "r"(v), "r"(a) : "memory"); }
static inline void mmio_write64(u64 a, u64 v) { __asm__ volatile("movq %0, (%1)" : : "r"(v), "r"(a) : "memory"); }

/* A full barrier (locked op: no SSE2 needed). */
static inline void tg_mb(void) { __asm__ volatile("lock orq $0, (%%rsp)" : : : "memory", "cc"); }

/* FNV-1a 32, as lib.rs fnv1a. */
u32 tg_fnv1a(const void *p, u64 len);
/* Continues a hash: tg_fnv1a(a ++ b) == tg_fnv1a_more(tg_fnv1a(a), b). */
u32 tg_fnv1a_more(u32 h, const void *p, u64 len);

/* Zeroed memory from the heap (RAM from 16 MiB, at least 48 MiB), never
   freed; identity mapped, so the pointer is the guest-physical address.
   Fails the guest when exhausted. align: a power of two (0 or 1: none). */
void *tg_alloc(u64 bytes, u64 align);

/* Maps [addr, addr + len) identity, 2 MiB user pages; the low 4 GiB
   always are. Fails the guest if it runs out of page-table pages. */
void tg_map(u64 addr, u64 len);

#endif
