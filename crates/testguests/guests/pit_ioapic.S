/*
 * pit_ioapic: the wiring the MP table describes, seen from a guest. With
 * both 8259s masked, I/O APIC pins 0 and 2 unmasked (edge, to APIC 0) and
 * the PIT ticking at ~1 kHz, waits (bounded by the TSC) for TICKS timer
 * interrupts on pin 2, EOIing each through the local APIC. Pin 0 (the
 * 8259's ExtINT pin) must stay silent.
 *
 * Interrupts are taken only inside "sti; hlt", and handlers go back to
 * the wait loop with a fresh stack instead of IRET, so the guest needs
 * no instruction an instruction emulator may lack (KVM's cannot emulate
 * a protected-mode IRET). The local APIC timer (one-shot, 2^32 bus
 * cycles: ~4 s on KVM's 1 GHz APIC bus) bounds the wait.
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
#define VEC_PIN2        0x30
#define VEC_PIN0        0x31
#define VEC_TIMEOUT     0x32
#define VEC_SPURIOUS    0x3f
#define IDT_ENTRIES     64
#define TICKS           10
#define PIT_DIVISOR     1193    /* ~1 kHz */

        PVH_NOTE(pvh_start)
        .code32
        .section .text.start, "ax"
        .globl pvh_start
pvh_start:
        cli
        movl $stack_top, %esp

        /* IDT: every vector fails loudly except ours. */
        movl $unexpected, %eax
        call fill_idt
        movl $VEC_PIN2, %ecx
        movl $on_pin2, %eax
        call set_gate
        movl $VEC_PIN0, %ecx
        movl $on_pin0, %eax
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

        /* Pins 2 and 0: fixed, physical, edge, active high, unmasked, APIC 0. */
        movl $(IOAPIC_REDIR(2) + 1), IOAPIC_SEL
        movl $0, IOAPIC_WIN
        movl $IOAPIC_REDIR(2), IOAPIC_SEL
        movl $VEC_PIN2, IOAPIC_WIN
        movl $(IOAPIC_REDIR(0) + 1), IOAPIC_SEL
        movl $0, IOAPIC_WIN
        movl $IOAPIC_REDIR(0), IOAPIC_SEL
        movl $VEC_PIN0, IOAPIC_WIN

        /* PIT channel 0, lobyte/hibyte, mode 2 (rate generator). */
        movb $0x34, %al
        outb %al, $0x43
        movw $PIT_DIVISOR, %ax
        outb %al, $0x40
        movb %ah, %al
        outb %al, $0x40

        /* The deadline: local APIC timer, one-shot, divide by 1. */
        movl $0xb, LAPIC_TIMER_DIV
        movl $VEC_TIMEOUT, LAPIC_LVT_TIMER
        movl $0xffffffff, LAPIC_TIMER_INIT

wait:   cmpl $TICKS, pin2_count
        jae 3f
        sti
        hlt                     /* the only place interrupts are taken */
        cli
        jmp wait

timeout:
        PUTS32(s_timeout)
        movl pin2_count, %eax
        call puthex
        call newline
        movl $EXIT_FAIL, %eax
        jmp exit

3:      cli
        PUTS32(s_ticks)
        movl pin0_count, %eax
        call puthex
        call newline
        movl $EXIT_PASS, %eax
        jmp exit

/* Handlers return to the wait loop (interrupts off) on a fresh stack. */
on_pin2:
        incl pin2_count
        movl $0, LAPIC_EOI
        movl $stack_top, %esp
        jmp wait
on_pin0:
        incl pin0_count
        movl $0, LAPIC_EOI
        movl $stack_top, %esp
        jmp wait
on_spurious:
        movl $stack_top, %esp
        jmp wait
unexpected:
        PUTS32(s_unexpected)
        movl $EXIT_FAIL, %eax
        jmp exit


        .section .rodata
s_ticks:   .asciz "pit_ioapic: 0xa ticks on pin 2, pin 0 saw "
s_timeout: .asciz "pit_ioapic: timeout: ticks on pin 2: "
s_unexpected: .asciz "pit_ioapic: unexpected interrupt or exception\n"

        .data
        .balign 4
idtr:   .word IDT_ENTRIES * 8 - 1
        .long idt
pin2_count: .long 0
pin0_count: .long 0

        .bss
        .balign 8
idt:    .space IDT_ENTRIES * 8
        .text

#include "lib32.S"
#include "idt32.S"
