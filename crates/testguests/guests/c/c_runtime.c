/*
 * c_runtime: checks the C test-guest runtime itself (tg.c, pci.c).
 * Command line: optional "echo=WORD" and "num=N".
 */
#include "pci.h"
#include "tg.h"

int main(void)
{
	tg_name = "c_runtime";
	tg_printf("c_runtime: hello from C at CPL%u\n", 3u & ({
		u16 cs;
		__asm__("mov %%cs, %0" : "=r"(cs));
		cs;
	}));
	tg_printf("c_runtime: format %x %lx %d %ld %u %lu %c %s %p %05d|%3s|\n", 0xbeefu,
		  0x123456789abcul, -42, -5000000000l, 4000000000u, 18000000000000000000ul,
		  'z', "str", (void *)0x1000, -12, "ab");
	char w[16];
	if (tg_opt("echo", w, sizeof(w)))
		tg_printf("c_runtime: echo %s\n", w);
	else
		tg_printf("c_runtime: no echo\n");
	tg_printf("c_runtime: num %lu\n", tg_opt_u64("num", 7));

	u8 *a = tg_alloc(3, 1), *b = tg_alloc(1 << 20, 4096), *c = tg_alloc(40ul << 20, 8);
	if ((u64)a < (16ul << 20) || ((u64)b & 4095) || b < a + 3 || c < b + (1 << 20))
		tg_fail("bad allocations %p %p %p", a, b, c);
	for (u64 i = 0; i < (40ul << 20); i += 4096)
		if (c[i])
			tg_fail("heap not zeroed at %p", c + i);
	memset(b, 'a', 1);
	tg_printf("c_runtime: fnv1a %x %x\n", tg_fnv1a("", 0), tg_fnv1a(b, 1));

	struct pci_fn f;
	for (int slot = 0; slot < 32; slot++) {
		struct pci_fn probe = { 0, (u8)slot, 0, 0, 0 };
		u32 id = pci_cfg_read32(&probe, 0);
		if ((id & 0xffff) == 0xffff)
			continue;
		if (!pci_find((u16)id, (u16)(id >> 16), 0, &f))
			tg_fail("pci_find missed %x", id);
		tg_printf("c_runtime: pci %u %x:%x\n", slot, f.vendor, f.device);
	}
	u64 t0 = rdtsc();
	tg_delay_tsc(1000);
	if (rdtsc() - t0 < 1000)
		tg_fail("tg_delay_tsc returned early");
	tg_printf("c_runtime: done\n");
	return EXIT_PASS;
}
