/*
 * switch_aarch64.S - coroutine context switch for aarch64 (AAPCS64).
 *
 * void weft__ctx_switch(void **save_sp, void *to_sp)
 *   Saves the callee-saved state of the caller on its stack, stores sp in
 *   *save_sp, loads to_sp, restores the state saved there and returns into
 *   that context. Saved, exactly what AAPCS64 makes callee-saved: x19-x28,
 *   x29 (fp), x30 (lr, the resume address), sp, d8-d15 (the low halves of
 *   v8-v15), plus FPCR (rounding mode, flush-to-zero), which is written back
 *   only when it differs (writing it can stall). Frame (0xb0 bytes from the
 *   saved sp up):
 *     0x00: d8-d15, 0x40: x19-x28, 0x90: x29, 0x98: x30, 0xa0: fpcr, 0xa8: pad
 *   arch.h builds the first frame of a new context with the same layout.
 *
 * void weft__ctx_resume(void **save_sp, void *to_sp, const uint64_t *fp)
 *   x86-64 needs it (switch_x86_64.S); here it is weft__ctx_switch.
 *
 * weft__ctx_trampoline: where a new context's first switch returns to;
 *   calls x20(x19) and never returns.
 *
 * BTI: both routines start with `bti c` (hint #34, a no-op without BTI); the
 * GNU property note is emitted when the compiler enables BTI/PAC.
 */
#if defined(__aarch64__)

    .text
    .globl  weft__ctx_switch
    .hidden weft__ctx_switch
    .type   weft__ctx_switch, %function
    .p2align 4
weft__ctx_switch:
    .cfi_startproc
    hint    #34
    sub     sp, sp, #0xb0
    stp     d8, d9, [sp, #0x00]
    stp     d10, d11, [sp, #0x10]
    stp     d12, d13, [sp, #0x20]
    stp     d14, d15, [sp, #0x30]
    stp     x19, x20, [sp, #0x40]
    stp     x21, x22, [sp, #0x50]
    stp     x23, x24, [sp, #0x60]
    stp     x25, x26, [sp, #0x70]
    stp     x27, x28, [sp, #0x80]
    stp     x29, x30, [sp, #0x90]
    mrs     x9, fpcr
    str     x9, [sp, #0xa0]
    mov     x10, sp
    str     x10, [x0]
    mov     sp, x1
    ldr     x10, [sp, #0xa0]
    cmp     x9, x10
    b.eq    1f
    msr     fpcr, x10
1:
    ldp     d8, d9, [sp, #0x00]
    ldp     d10, d11, [sp, #0x10]
    ldp     d12, d13, [sp, #0x20]
    ldp     d14, d15, [sp, #0x30]
    ldp     x19, x20, [sp, #0x40]
    ldp     x21, x22, [sp, #0x50]
    ldp     x23, x24, [sp, #0x60]
    ldp     x25, x26, [sp, #0x70]
    ldp     x27, x28, [sp, #0x80]
    ldp     x29, x30, [sp, #0x90]
    add     sp, sp, #0xb0
    ret
    .cfi_endproc
    .size   weft__ctx_switch, .-weft__ctx_switch

    /* The same as weft__ctx_switch (x2 ignored): reading FPCR is cheap. */
    .globl  weft__ctx_resume
    .hidden weft__ctx_resume
    .type   weft__ctx_resume, %function
    .p2align 4
weft__ctx_resume:
    .cfi_startproc
    hint    #34
    b       weft__ctx_switch
    .cfi_endproc
    .size   weft__ctx_resume, .-weft__ctx_resume

    .globl  weft__ctx_trampoline
    .hidden weft__ctx_trampoline
    .type   weft__ctx_trampoline, %function
    .p2align 4
weft__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined x30
    hint    #34
    mov     x0, x19
    blr     x20
    brk     #0
    .cfi_endproc
    .size   weft__ctx_trampoline, .-weft__ctx_trampoline

#if defined(__ARM_FEATURE_BTI_DEFAULT) || defined(__ARM_FEATURE_PAC_DEFAULT)
    .section .note.gnu.property, "a"
    .p2align 3
    .long   4                   /* name size */
    .long   16                  /* descriptor size */
    .long   5                   /* NT_GNU_PROPERTY_TYPE_0 */
    .asciz  "GNU"
    .long   0xc0000000          /* GNU_PROPERTY_AARCH64_FEATURE_1_AND */
    .long   4
#if defined(__ARM_FEATURE_BTI_DEFAULT) && defined(__ARM_FEATURE_PAC_DEFAULT)
    .long   3                   /* BTI | PAC */
#elif defined(__ARM_FEATURE_BTI_DEFAULT)
    .long   1                   /* BTI */
#else
    .long   2                   /* PAC */
#endif
    .p2align 3
#endif

#endif /* __aarch64__ */

    .section .note.GNU-stack, "", %progbits
