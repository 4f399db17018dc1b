/* Shared constants and macros of the test guests (GNU as via cpp). */
#define COM1            0x3f8
#define COM1_LSR        0x3fd
#define LSR_THRE        0x20
#define DEBUG_EXIT_PORT 0xf4

/* Values written to isa-debug-exit; the VMM exits with (v << 1) | 1. */
#define EXIT_PASS       0x10    /* status 33 */
#define EXIT_FAIL       0x11    /* status 35: generic failure (bad magic, reset ignored) */
#define EXIT_SMP_TIMEOUT 0x12   /* status 37: not all expected CPUs checked in */
#define EXIT_BAD_CMDLINE 0x13   /* status 39: cpus=N missing digits or out of range */

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC 0x336ec578

/* The PVH entry note (found by loaders in a PT_NOTE segment). */
#define PVH_NOTE(entry)                         \
        .pushsection .note.Xen, "a", @note;     \
        .balign 4;                              \
        .long 4, 4, XEN_ELFNOTE_PHYS32_ENTRY;   \
        .asciz "Xen";                           \
        .long entry;                            \
        .popsection

/* Prints the NUL-terminated string at label s (32-bit code). */
#define PUTS32(s)  pushl %esi; movl $s, %esi; call puts; popl %esi
#define PUTS64(s)  pushq %rsi; leaq s(%rip), %rsi; call puts64; popq %rsi
