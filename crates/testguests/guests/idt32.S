/*
 * 32-bit helpers for guests that take interrupts; the guest defines
 * `idt` (IDT_ENTRIES gates of 8 bytes) and IDT_ENTRIES.
 */
        .code32
        .section .text
/* set_gate: IDT vector %ecx → 32-bit interrupt gate to %eax. */
set_gate:
        pushl %ebx
        pushl %edx
        leal idt(,%ecx,8), %ebx
        movw %ax, (%ebx)
        movw %cs, %dx
        movw %dx, 2(%ebx)
        movw $0x8e00, 4(%ebx)
        movl %eax, %edx
        shrl $16, %edx
        movw %dx, 6(%ebx)
        popl %edx
        popl %ebx
        ret

/* fill_idt: every vector 0..IDT_ENTRIES-1 → 32-bit interrupt gate to %eax. */
fill_idt:
        pushl %ecx
        xorl %ecx, %ecx
1:      call set_gate
        incl %ecx
        cmpl $IDT_ENTRIES, %ecx
        jb 1b
        popl %ecx
        ret

/* mask_pics: masks every 8259 input (interrupts come through the I/O APIC). */
mask_pics:
        pushl %eax
        movb $0xff, %al
        outb %al, $0x21
        outb %al, $0xa1
        popl %eax
        ret
