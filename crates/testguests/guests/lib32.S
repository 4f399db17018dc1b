/*
 * 32-bit serial output and exit helpers. Every routine preserves all
 * registers it does not return in.
 */
        .code32
        .text

/* putc: writes %al to COM1 once the transmitter holding register is empty. */
putc:
        pushl %edx
        pushl %eax
        movw $COM1_LSR, %dx
1:      inb %dx, %al
        testb $LSR_THRE, %al
        jz 1b
        popl %eax
        movw $COM1, %dx
        outb %al, %dx
        popl %edx
        ret

/* puts: writes the NUL-terminated string at %esi. */
puts:
        pushl %esi
        pushl %eax
1:      movb (%esi), %al
        testb %al, %al
        jz 2f
        call putc
        incl %esi
        jmp 1b
2:      popl %eax
        popl %esi
        ret

/* putsn: writes at most %ecx bytes of the NUL-terminated string at %esi. */
putsn:
        pushl %esi
        pushl %ecx
        pushl %eax
1:      testl %ecx, %ecx
        jz 2f
        movb (%esi), %al
        testb %al, %al
        jz 2f
        call putc
        incl %esi
        decl %ecx
        jmp 1b
2:      popl %eax
        popl %ecx
        popl %esi
        ret

newline:
        pushl %eax
        movb $'\n', %al
        call putc
        popl %eax
        ret

space:
        pushl %eax
        movb $' ', %al
        call putc
        popl %eax
        ret

/* puthex64: writes %edx:%eax as 0x<hex> without leading zeros. */
puthex64:
        pushal
        movl %eax, %ebx
        movb $'0', %al
        call putc
        movb $'x', %al
        call putc
        movl $16, %ecx          /* nibbles left */
        xorl %edi, %edi         /* nonzero once a digit was printed */
1:      movl %edx, %eax
        shrl $28, %eax
        shldl $4, %ebx, %edx
        shll $4, %ebx
        cmpl $1, %ecx
        je 2f                   /* always print the last digit */
        testl %eax, %eax
        jnz 2f
        testl %edi, %edi
        jz 3f
2:      movl $1, %edi
        movb hexdigits(%eax), %al
        call putc
3:      loop 1b
        popal
        ret

/* puthex: writes %eax as 0x<hex>. */
puthex:
        pushl %edx
        xorl %edx, %edx
        call puthex64
        popl %edx
        ret

/* putdec: writes %eax in decimal. */
putdec:
        pushal
        movl $10, %ebx
        xorl %ecx, %ecx
1:      xorl %edx, %edx
        divl %ebx
        pushl %edx
        incl %ecx
        testl %eax, %eax
        jnz 1b
2:      popl %eax
        addb $'0', %al
        call putc
        loop 2b
        popal
        ret

/* fnv1a: FNV-1a 32-bit hash of %ecx bytes at %esi, returned in %eax. */
fnv1a:
        pushl %esi
        pushl %ecx
        pushl %edx
        movl $0x811c9dc5, %eax
        jecxz 2f
1:      movzbl (%esi), %edx
        xorl %edx, %eax
        imull $0x01000193, %eax, %eax
        incl %esi
        loop 1b
2:      popl %edx
        popl %ecx
        popl %esi
        ret

/* exit: writes %eax to isa-debug-exit; halts if the VMM ignores it. */
exit:
        movw $DEBUG_EXIT_PORT, %dx
        outl %eax, %dx
1:      cli
        hlt
        jmp 1b

        .section .rodata
hexdigits:
        .ascii "0123456789abcdef"
        .text

        .bss
        .balign 16
stack_bottom:
        .space 4096
stack_top:
        .text
