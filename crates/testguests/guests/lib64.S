/*
 * 64-bit serial output and exit helpers. Every routine preserves all
 * registers it does not return in.
 */
        .code64
        .text

/* putc64: writes %al to COM1 once the transmitter holding register is empty. */
putc64:
        pushq %rdx
        pushq %rax
        movw $COM1_LSR, %dx
1:      inb %dx, %al
        testb $LSR_THRE, %al
        jz 1b
        popq %rax
        movw $COM1, %dx
        outb %al, %dx
        popq %rdx
        ret

/* putsn64: writes at most %rcx bytes of the NUL-terminated string at %rsi. */
putsn64:
        pushq %rsi
        pushq %rcx
        pushq %rax
1:      testq %rcx, %rcx
        jz 2f
        movb (%rsi), %al
        testb %al, %al
        jz 2f
        call putc64
        incq %rsi
        decq %rcx
        jmp 1b
2:      popq %rax
        popq %rcx
        popq %rsi
        ret

/* puts64: writes the NUL-terminated string at %rsi. */
puts64:
        pushq %rcx
        movq $-1, %rcx
        call putsn64
        popq %rcx
        ret

newline64:
        pushq %rax
        movb $'\n', %al
        call putc64
        popq %rax
        ret

space64:
        pushq %rax
        movb $' ', %al
        call putc64
        popq %rax
        ret

/* puthex64q: writes %rax as 0x<hex> without leading zeros. */
puthex64q:
        pushq %rax
        pushq %rbx
        pushq %rcx
        pushq %rdx
        pushq %rdi
        movq %rax, %rbx
        movb $'0', %al
        call putc64
        movb $'x', %al
        call putc64
        movl $16, %ecx
        xorl %edi, %edi
1:      movq %rbx, %rax
        shrq $60, %rax
        shlq $4, %rbx
        cmpl $1, %ecx
        je 2f
        testq %rax, %rax
        jnz 2f
        testl %edi, %edi
        jz 3f
2:      movl $1, %edi
        leaq hexdigits64(%rip), %rdx
        movb (%rdx,%rax), %al
        call putc64
3:      decl %ecx
        jnz 1b
        popq %rdi
        popq %rdx
        popq %rcx
        popq %rbx
        popq %rax
        ret

/* fnv1a64: FNV-1a 32-bit hash of %rcx bytes at %rsi, returned in %eax. */
fnv1a64:
        pushq %rsi
        pushq %rcx
        pushq %rdx
        movl $0x811c9dc5, %eax
        testq %rcx, %rcx
        jz 2f
1:      movzbl (%rsi), %edx
        xorl %edx, %eax
        imull $0x01000193, %eax, %eax
        incq %rsi
        decq %rcx
        jnz 1b
2:      popq %rdx
        popq %rcx
        popq %rsi
        ret

/* exit64: writes %eax to isa-debug-exit; halts if the VMM ignores it. */
exit64:
        movw $DEBUG_EXIT_PORT, %dx
        outl %eax, %dx
1:      cli
        hlt
        jmp 1b

        .section .rodata
hexdigits64:
        .ascii "0123456789abcdef"

        .bss
        .balign 16
stack64_bottom:
        .space 4096
stack64_top:
        .text
