/*
 * 32-bit IDT helper for guests that take interrupts; the guest defines
 * `idt` (256 gates of 8 bytes).
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
