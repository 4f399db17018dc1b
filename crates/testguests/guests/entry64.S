/*
 * entry64.S: the PVH entry of the 64-bit guests whose payload runs at
 * CPL3 (the C runtime's crt64.S, bench64.S). Included once, after
 * common.h, by a file that defines ENTRY64_USER: the CPL3 code entered
 * with %rdi = the hvm_start_info the loader passed in %ebx.
 *
 * The 32-bit entry identity-maps the low 4 GiB (2 MiB user pages),
 * enters long mode and IRETs to ENTRY64_USER at CPL3 with IOPL 3 and
 * interrupts off, on a 64 KiB stack 16-byte aligned. Port I/O works at
 * CPL3 through IOPL 3 and a TSS whose I/O bitmap allows every port (a
 * hypervisor may not let a guest's user mode run with IOPL 3, then the
 * bitmap decides); rdtsc through CR4.TSD clear. Why CPL3: the payload
 * must cost the same on every KVM; software-assisted ones emulate guest
 * CPL0.
 *
 * No IDT: any fault triple-faults the guest (bhyve exits 3). The page
 * tables (tg_pml4, tg_pdpt, tg_pd) are user pages too, so CPL3 code can
 * add mappings above 4 GiB (new entries in not-present slots need no TLB
 * flush).
 */

#define GDT_CODE64      0x08
#define GDT_DATA        0x10
#define GDT_UCODE64     0x1b
#define GDT_UDATA       0x23
#define GDT_TSS         0x28
#define RFLAGS_USER     0x3002  /* IOPL 3, IF clear */
#define TSS_IOMAP       104
#define TSS_BYTES       (TSS_IOMAP + 8192 + 1)

        PVH_NOTE(pvh_start)
        .code32
        .section .text.start, "ax"
        .globl pvh_start
pvh_start:
        cli
        movl $kstack_top, %esp
        movl %ebx, %esi         /* start_info, for ENTRY64_USER */
        movl $tg_pd, %edi       /* 2048 PDEs: 4 GiB, present|rw|user|2M */
        xorl %ecx, %ecx
1:      movl %ecx, %eax
        shll $21, %eax
        orl $0x87, %eax
        movl %eax, (%edi,%ecx,8)
        movl %ecx, %eax
        shrl $11, %eax
        movl %eax, 4(%edi,%ecx,8)
        incl %ecx
        cmpl $2048, %ecx
        jb 1b
        xorl %ecx, %ecx
2:      movl %ecx, %eax
        shll $12, %eax
        addl $(tg_pd + 7), %eax
        movl %eax, tg_pdpt(,%ecx,8)
        incl %ecx
        cmpl $4, %ecx
        jb 2b
        movl $(tg_pdpt + 7), tg_pml4
        movl $tg_pml4, %eax
        movl %eax, %cr3
        movl %cr4, %eax
        orl $0x20, %eax         /* PAE */
        andl $~4, %eax          /* TSD clear: rdtsc at CPL3 */
        movl %eax, %cr4
        movl $0xc0000080, %ecx  /* EFER.LME */
        rdmsr
        orl $0x100, %eax
        wrmsr
        movl %cr0, %eax
        orl $0x80000001, %eax   /* PG | PE */
        movl %eax, %cr0
        movl $tss, %eax         /* the TSS descriptor's base */
        movw %ax, gdt_tss + 2
        shrl $16, %eax
        movb %al, gdt_tss + 4
        movb %ah, gdt_tss + 7
        movl $kstack_top, tss + 4       /* rsp0 */
        movw $TSS_IOMAP, tss + 0x66
        movb $0xff, tss + TSS_IOMAP + 8192
        lgdt gdtr
        ljmpl $GDT_CODE64, $3f
        .code64
3:      movl $GDT_DATA, %eax
        movl %eax, %ds
        movl %eax, %es
        movl %eax, %ss
        movw $GDT_TSS, %ax
        ltr %ax
        movl %esi, %edi         /* zero-extended: the upper half is undefined */
        pushq $GDT_UDATA
        pushq $ustack_top
        pushq $RFLAGS_USER
        pushq $GDT_UCODE64
        pushq $ENTRY64_USER
        iretq

        .data
        .balign 8
gdt:    .quad 0
        .quad 0x00af9a000000ffff        /* 0x08: 64-bit code, DPL 0 */
        .quad 0x00cf92000000ffff        /* 0x10: data, DPL 0 */
        .quad 0x00affa000000ffff        /* 0x18: 64-bit code, DPL 3 */
        .quad 0x00cff2000000ffff        /* 0x20: data, DPL 3 */
gdt_tss:                                /* 0x28: 64-bit TSS, base set at entry */
        .word TSS_BYTES - 1, 0
        .byte 0, 0x89, 0, 0
        .quad 0
gdt_end:
gdtr:   .word gdt_end - gdt - 1
        .long gdt

        .bss
        .balign 4096
tss:    .space TSS_BYTES
        .balign 4096
        .globl tg_pml4, tg_pdpt, tg_pd
tg_pml4: .space 4096
tg_pdpt: .space 4096
tg_pd:  .space 4 * 4096
        .space 4096
kstack_top:
        .balign 16
        .space 65536
ustack_top:
