/*
 * virtio_rnd's PCI side (included by virtio_rnd.S): configuration
 * mechanism #1 for the current function (cur_cfg), the bus-0 scan, the
 * ECAM cross-check, BAR decoding and the capability walk that finds the
 * MSI-X/MSI capabilities and the virtio structures.
 */
        .code32
        .text
/* bar_of: %ecx = BAR index named by a capability: its memory address in
   %ebx; fails when it is not a decoded memory BAR. */
bar_of:
        cmpl $6, %ecx
        jae 1f
        cmpl $0, bar_io(,%ecx,4)
        jne 1f
        movl bar_addr(,%ecx,4), %ebx
        testl %ebx, %ebx
        jz 1f
        ret
1:      FAIL(s_bad_bar)

/* --- PCI ------------------------------------------------------------------ */

/* cfg_sel: %eax = offset in cur_cfg's space: selects its dword through
   CONF1_ADDR; %dx = the data port of the byte. */
cfg_sel:
        pushl %eax
        andl $0xfc, %eax
        orl cur_cfg, %eax
        movw $CONF1_ADDR, %dx
        outl %eax, %dx
        popl %eax
        pushl %eax
        andl $3, %eax
        leal CONF1_DATA(%eax), %edx
        popl %eax
        ret

/* cfg_rd{8,16,32}: %eax = offset → %eax; cfg_wr{16,32}: %eax = offset,
   %ecx = value. All clobber %edx. */
cfg_rd32:
        call cfg_sel
        inl %dx, %eax
        ret
cfg_rd16:
        call cfg_sel
        inw %dx, %ax
        movzwl %ax, %eax
        ret
cfg_rd8:
        call cfg_sel
        inb %dx, %al
        movzbl %al, %eax
        ret
cfg_wr32:
        call cfg_sel
        movl %ecx, %eax
        outl %eax, %dx
        ret
cfg_wr16:
        call cfg_sel
        movl %ecx, %eax
        outw %ax, %dx
        ret

/* scan: every slot and function of bus 0; 1af4:1005 ones go to funcs. */
scan:
        xorl %ebx, %ebx
1:      movl %ebx, %eax
        shll $8, %eax
        orl $CONF1_ENABLE, %eax
        movl %eax, cur_cfg
        xorl %eax, %eax
        call cfg_rd32
        cmpl $RNG_ID, %eax
        jne 2f
        movl nfuncs, %ecx
        cmpl $MAX_FUNCS, %ecx
        jae 2f
        movl cur_cfg, %eax
        movl %eax, funcs(,%ecx,4)
        incl nfuncs
        PUTS32(s_function)
        movl %ebx, %eax
        shrl $3, %eax
        call puthex
        call space
        movl %ebx, %eax
        andl $7, %eax
        call puthex
        call newline
2:      incl %ebx
        cmpl $256, %ebx
        jb 1b
        ret

/* ecam_check: the first function's ID and class dwords through ECAM equal
   mechanism #1's. */
ecam_check:
        movl funcs, %eax
        movl %eax, cur_cfg
        andl $0x00ffff00, %eax
        shll $4, %eax
        leal ECAM_BASE(%eax), %esi
        xorl %eax, %eax
        call cfg_rd32
        cmpl (%esi), %eax
        jne 1f
        movl $8, %eax
        call cfg_rd32
        cmpl 8(%esi), %eax
        jne 1f
        PUTS32(s_ecam)
        ret
1:      FAIL(s_ecam_differs)

/* read_bars: raw BAR registers into bar_raw (printed), decoded addresses
   into bar_addr/bar_io. A 64-bit BAR above 4 GiB fails (32-bit guest). */
read_bars:
        xorl %ebx, %ebx
1:      cmpl $6, %ebx
        jae 9f
        leal 0x10(,%ebx,4), %eax
        call cfg_rd32
        movl %eax, bar_raw(,%ebx,4)
        testl $1, %eax
        jz 2f
        andl $~3, %eax
        movl %eax, bar_addr(,%ebx,4)
        movl $1, bar_io(,%ebx,4)
        incl %ebx
        jmp 1b
2:      movl %eax, %ecx
        andl $~0xf, %eax
        movl %eax, bar_addr(,%ebx,4)
        movl $0, bar_io(,%ebx,4)
        andl $6, %ecx
        cmpl $4, %ecx
        jne 3f
        incl %ebx               /* the upper half of a 64-bit BAR */
        cmpl $6, %ebx
        jae 9f
        leal 0x10(,%ebx,4), %eax
        call cfg_rd32
        movl %eax, bar_raw(,%ebx,4)
        movl $0, bar_addr(,%ebx,4)
        testl %eax, %eax
        jz 3f
        FAIL(s_bar_high)
3:      incl %ebx
        jmp 1b
9:      PUTS32(s_bars)
        xorl %ebx, %ebx
4:      call space
        movl bar_raw(,%ebx,4), %eax
        call puthex
        incl %ebx
        cmpl $6, %ebx
        jb 4b
        jmp newline

/* walk_caps: prints each capability; records MSI-X, MSI and the virtio
   structures. Bounded, so a looping list cannot hang the guest. */
walk_caps:
        movl $6, %eax
        call cfg_rd16
        testl $0x10, %eax
        jnz 1f
        FAIL(s_no_caps)
1:      movl $0x34, %eax
        call cfg_rd8
        andl $0xfc, %eax
        movl %eax, %esi
        movl $48, %ebp
2:      testl %esi, %esi
        jz 9f
        cmpl $0x40, %esi
        jb 8f
        decl %ebp
        jz 8f
        movl %esi, %eax
        call cfg_rd8
        movl %eax, %ebx
        SHOW(s_cap)
        cmpl $0x11, %ebx
        jne 3f
        movl %esi, msix_cap
        jmp 5f
3:      cmpl $5, %ebx
        jne 4f
        movl %esi, msi_cap
        jmp 5f
4:      cmpl $9, %ebx
        jne 5f
        call vendor_cap
5:      call newline
        leal 1(%esi), %eax
        call cfg_rd8
        andl $0xfc, %eax
        movl %eax, %esi
        jmp 2b
8:      FAIL(s_bad_caps)
9:      ret

/* vendor_cap: the virtio structure at %esi: prints type, BAR, offset and
   length; records common/notify/ISR addresses. */
vendor_cap:
        leal 3(%esi), %eax
        call cfg_rd8
        movl %eax, cap_type
        SHOW(s_type)
        leal 4(%esi), %eax
        call cfg_rd8
        movl %eax, cap_bar
        SHOW(s_bar)
        leal 8(%esi), %eax
        call cfg_rd32
        movl %eax, cap_off
        SHOW(s_off)
        leal 12(%esi), %eax
        call cfg_rd32
        SHOW(s_len)
        movl cap_type, %ecx
        cmpl $5, %ecx
        ja 9f
        movl $1, %eax
        shll %cl, %eax
        orl %eax, vtypes
        cmpl $3, %ecx
        ja 9f
        cmpl $1, %ecx
        jb 9f
        movl cap_bar, %ecx
        call bar_of
        addl cap_off, %ebx
        movl cap_type, %ecx
        cmpl $1, %ecx
        jne 1f
        movl %ebx, common_addr
        ret
1:      cmpl $2, %ecx
        jne 2f
        movl %ebx, notify_base
        leal 16(%esi), %eax
        call cfg_rd32
        movl %eax, notify_mult
        ret
2:      movl %ebx, isr_addr
9:      ret

        .section .rodata
s_function:     .asciz "virtio_rnd: function "
s_ecam:         .asciz "virtio_rnd: ecam agrees with conf1\n"
s_ecam_differs: .asciz "virtio_rnd: ecam differs from conf1\n"
s_bars:         .asciz "virtio_rnd: bars"
s_bar_high:     .asciz "virtio_rnd: a 64-bit BAR above 4 GiB\n"
s_no_caps:      .asciz "virtio_rnd: no capability list\n"
s_bad_caps:     .asciz "\nvirtio_rnd: malformed capability list\n"
s_cap:          .asciz "virtio_rnd: cap "
s_type:         .asciz " type "
s_bar:          .asciz " bar "
s_off:          .asciz " off "
s_len:          .asciz " len "
s_bad_bar:      .asciz "\nvirtio_rnd: a capability names a BAR that is not decoded memory\n"
        .text
