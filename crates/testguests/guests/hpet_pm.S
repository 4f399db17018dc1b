/*
 * hpet_pm: bhyve's platform timers and S5, seen from a guest.
 *
 * 1. Starts the HPET, then reads the PM timer and the HPET counter, waits
 *    until the PM timer advanced PM_WAIT ticks (~10 ms) and reads both
 *    again: prints both deltas (the test checks their ratio).
 * 2. HPET timer 0, one-shot, edge, I/O APIC pin 20: one interrupt ~1 ms
 *    after arming.
 * 3. HPET timer 1, periodic (~1 ms), level, pin 21: three interrupts,
 *    each acknowledged by writing its GEN_INT_STS bit, then EOI.
 * 4. Writes SLP_TYP 5 | SLP_EN to PM1a_CNT: bhyve powers off (exit 1).
 *
 * Interrupts are taken only inside "sti; hlt" and handlers return to the
 * wait loop on a fresh stack, as in pit_ioapic. The local APIC timer
 * (~4 s) bounds each wait.
 */
#include "common.h"

#define LAPIC_EOI       0xfee000b0
#define LAPIC_SVR       0xfee000f0
#define LAPIC_LVT_TIMER 0xfee00320
#define LAPIC_TIMER_INIT 0xfee00380
#define LAPIC_TIMER_DIV 0xfee003e0
#define IOAPIC_SEL      0xfec00000
#define IOAPIC_WIN      0xfec00010
#define IOAPIC_REDIR(pin) (0x10 + 2 * (pin))
#define HPET            0xfed00000
#define HPET_CONFIG     (HPET + 0x10)
#define HPET_ISR        (HPET + 0x20)
#define HPET_COUNTER    (HPET + 0xf0)
#define HPET_TCNF(n)    (HPET + 0x100 + 0x20 * (n))
#define HPET_TCMP(n)    (HPET + 0x108 + 0x20 * (n))
#define PM_TMR          0x408
#define PM1A_CNT        0x404
#define PM_WAIT         35795   /* 10 ms of 3.579545 MHz */
#define HPET_1MS        16777   /* 1 ms of 2^24 Hz */
#define VEC_T0          0x30
#define VEC_T1          0x31
#define VEC_TIMEOUT     0x32
#define VEC_SPURIOUS    0x3f
#define IDT_ENTRIES     64
#define LEVEL_TICKS     3

        PVH_NOTE(pvh_start)
        .code32
        .section .text.start, "ax"
        .globl pvh_start
pvh_start:
        cli
        movl $stack_top, %esp

        movl $unexpected, %eax
        call fill_idt
        movl $VEC_T0, %ecx
        movl $on_t0, %eax
        call set_gate
        movl $VEC_T1, %ecx
        movl $on_t1, %eax
        call set_gate
        movl $VEC_SPURIOUS, %ecx
        movl $on_spurious, %eax
        call set_gate
        movl $VEC_TIMEOUT, %ecx
        movl $timeout, %eax
        call set_gate
        lidt idtr

        call mask_pics
        movl $(0x100 | VEC_SPURIOUS), LAPIC_SVR

        /* 1. Both counters around ~10 ms of PM timer. */
        movl $1, HPET_CONFIG
        movw $PM_TMR, %dx
        inl %dx, %eax
        movl %eax, %esi         /* pm0 */
        movl HPET_COUNTER, %edi /* hpet0 */
2:      inl %dx, %eax
        subl %esi, %eax
        cmpl $PM_WAIT, %eax
        jb 2b
        movl HPET_COUNTER, %ebx
        subl %edi, %ebx
        PUTS32(s_pm)
        call puthex
        PUTS32(s_hpet)
        movl %ebx, %eax
        call puthex
        call newline

        /* Pins 20 (edge) and 21 (level): fixed, physical, high, APIC 0. */
        movl $(IOAPIC_REDIR(20) + 1), IOAPIC_SEL
        movl $0, IOAPIC_WIN
        movl $IOAPIC_REDIR(20), IOAPIC_SEL
        movl $VEC_T0, IOAPIC_WIN
        movl $(IOAPIC_REDIR(21) + 1), IOAPIC_SEL
        movl $0, IOAPIC_WIN
        movl $IOAPIC_REDIR(21), IOAPIC_SEL
        movl $(0x8000 | VEC_T1), IOAPIC_WIN

        /* The deadline: local APIC timer, one-shot, divide by 1. */
        movl $0xb, LAPIC_TIMER_DIV
        movl $VEC_TIMEOUT, LAPIC_LVT_TIMER
        movl $0xffffffff, LAPIC_TIMER_INIT

        /* 2. Timer 0: route 20, interrupts on, edge, one-shot. */
        movl $wait_t0, resume
        movl $(20 << 9 | 1 << 2), HPET_TCNF(0)
        movl HPET_COUNTER, %eax
        addl $HPET_1MS, %eax
        movl %eax, HPET_TCMP(0)
wait_t0:
        cmpl $1, t0_count
        jae 3f
        sti
        hlt
        cli
        jmp wait_t0
3:      PUTS32(s_t0)

        /* 3. Timer 1: route 21, on, level, periodic; VAL_SET then period. */
        movl $wait_t1, resume
        movl $(21 << 9 | 1 << 6 | 1 << 3 | 1 << 2 | 1 << 1), HPET_TCNF(1)
        movl HPET_COUNTER, %eax
        addl $HPET_1MS, %eax
        movl %eax, HPET_TCMP(1)
        movl $HPET_1MS, HPET_TCMP(1)
wait_t1:
        cmpl $LEVEL_TICKS, t1_count
        jae 4f
        sti
        hlt
        cli
        jmp wait_t1
4:      movl $0, HPET_TCNF(1)   /* stop it */
        PUTS32(s_t1)

        /* 4. S5. */
        PUTS32(s_s5)
        movw $PM1A_CNT, %dx
        movw $(5 << 10 | 1 << 13), %ax
        outw %ax, %dx
        PUTS32(s_alive)
        movl $EXIT_FAIL, %eax
        jmp exit

timeout:
        PUTS32(s_timeout)
        movl t0_count, %eax
        call puthex
        call space
        movl t1_count, %eax
        call puthex
        call newline
        movl $EXIT_FAIL, %eax
        jmp exit

/* Handlers return to the current wait loop (interrupts off) on a fresh
 * stack; an interrupt is taken only in a wait loop. */
on_t0:
        incl t0_count
        movl $0, LAPIC_EOI
        movl $stack_top, %esp
        jmp *resume
on_t1:
        incl t1_count
        movl $2, HPET_ISR       /* drop the level first, then EOI */
        movl $0, LAPIC_EOI
        movl $stack_top, %esp
        jmp *resume
on_spurious:
        movl $stack_top, %esp
        jmp *resume
unexpected:
        PUTS32(s_unexpected)
        movl $EXIT_FAIL, %eax
        jmp exit


        .section .rodata
s_pm:      .asciz "hpet_pm: pm "
s_hpet:    .asciz " hpet "
s_t0:      .asciz "hpet_pm: timer 0 edge interrupt on pin 20\n"
s_t1:      .asciz "hpet_pm: timer 1 0x3 level interrupts on pin 21\n"
s_s5:      .asciz "hpet_pm: entering S5\n"
s_alive:   .asciz "hpet_pm: still running after S5\n"
s_timeout: .asciz "hpet_pm: timeout: "
s_unexpected: .asciz "hpet_pm: unexpected interrupt or exception\n"

        .data
        .balign 4
idtr:   .word IDT_ENTRIES * 8 - 1
        .long idt
resume: .long wait_t0
t0_count: .long 0
t1_count: .long 0

        .bss
        .balign 8
idt:    .space IDT_ENTRIES * 8
        .text

#include "lib32.S"
#include "idt32.S"
