/*
 * gdbsx test kernel: PVH entry, paging setup, AP entry paths, trap stubs.
 *
 * Assembled with __x86_64__ (long mode at TK_KBASE=0xffffffff80000000) or
 * without (32-bit protected mode at TK_KBASE=0xc0000000; 2-level paging
 * with 4 MiB pages, or PAE paging when TK_PAE is defined).
 *
 * Entry conventions:
 *   tk_pvh_entry32  BSP, from Xen PVH / QEMU PVH boot: 32-bit flat protected
 *                   mode, paging off, %ebx = phys addr of hvm_start_info.
 *   tk_ap_entry32   APs started by VCPUOP_initialise/VCPUOP_up: same mode,
 *                   %edi = cpu index (set in the vcpu_hvm_context).
 *   tk_trampoline_* APs started by INIT-SIPI-SIPI: real mode at
 *                   TK_TRAMPOLINE_PA, take a ticket for their cpu index.
 * All three meet in tk_common32 with %edi = cpu index.
 */
#include "layout.h"
#include "xenabi.h"

        .cfi_sections .debug_frame

/* One page-table entry: 8 bytes in both builds. */
#ifdef __x86_64__
#define PTE(x)  .quad (x)
#else
#define PTE(x)  .long (x), 0
#endif

#define PG_P    0x001
#define PG_RW   0x002
#define PG_PS   0x080

/* ------------------------------------------------------------------ */
/* ELF notes read by Xen's libelf and by QEMU's PVH loader.            */
/* ------------------------------------------------------------------ */
#define XEN_NOTE(type, body)                                   \
        .balign 4;                                             \
        .long 2f - 1f;                                         \
        .long 4f - 3f;                                         \
        .long type;                                            \
1:      .asciz "Xen";                                          \
2:      .balign 4;                                             \
3:      body;                                                  \
4:      .balign 4

        .section .note.Xen, "a", @note
        XEN_NOTE(XEN_ELFNOTE_GUEST_OS, .asciz "gdbsx-testkernel")
        XEN_NOTE(XEN_ELFNOTE_XEN_VERSION, .asciz "xen-3.0")
        XEN_NOTE(XEN_ELFNOTE_LOADER, .asciz "generic")
        XEN_NOTE(XEN_ELFNOTE_PHYS32_ENTRY, .long tk_pvh_entry32)

/* ------------------------------------------------------------------ */
/* Low (identity) part: runs at its physical address.                  */
/* ------------------------------------------------------------------ */
        .section .boot.text, "ax"
        .code32

        .globl tk_pvh_entry32
        .type tk_pvh_entry32, @function
tk_pvh_entry32:
        cli
        cld
        movl    %ebx, tk_start_info_pa
        lgdt    tk_boot_gdtr
        ljmp    $TK_CS32, $1f
1:      movl    $TK_DS, %eax
        movl    %eax, %ds
        movl    %eax, %es
        movl    %eax, %ss
        movl    %eax, %fs
        movl    %eax, %gs
        /* Boot trace on Xen's debug port (Xen prints "(dN) tk: pvh entry"). */
        movl    $tk_msg_entry, %esi
2:      movb    (%esi), %al
        testb   %al, %al
        jz      3f
        outb    %al, $XEN_HVM_DEBUGCONS_IOPORT
        incl    %esi
        jmp     2b
3:
        /* Zero .bss through its physical address (loaders may not). */
        movl    $__bss_start_pa, %edi
        movl    $__bss_end_pa, %ecx
        subl    %edi, %ecx
        xorl    %eax, %eax
        rep stosb
        xorl    %edi, %edi                      /* cpu 0 */
        jmp     tk_common32
        .size tk_pvh_entry32, . - tk_pvh_entry32

        .globl tk_ap_entry32
        .type tk_ap_entry32, @function
tk_ap_entry32:
        cli
        cld
        lgdt    tk_boot_gdtr
        ljmp    $TK_CS32, $1f
1:      movl    $TK_DS, %eax
        movl    %eax, %ds
        movl    %eax, %es
        movl    %eax, %ss
        movl    %eax, %fs
        movl    %eax, %gs
        jmp     tk_common32
        .size tk_ap_entry32, . - tk_ap_entry32

/* AP started by SIPI: flat segments loaded by the trampoline. */
        .type tk_sipi_entry32, @function
tk_sipi_entry32:
        movl    $TK_DS, %eax
        movl    %eax, %ds
        movl    %eax, %es
        movl    %eax, %ss
        movl    %eax, %fs
        movl    %eax, %gs
        movl    $1, %edi
        lock xaddl %edi, tk_sipi_next_cpu
        cmpl    $TK_MAX_CPUS, %edi
        jae     tk_park32
        jmp     tk_common32
        .size tk_sipi_entry32, . - tk_sipi_entry32

tk_park32:
        cli
        hlt
        jmp     tk_park32

/*
 * %edi = cpu index, flat 32-bit segments, paging off.
 * Turn paging on with the static tables below, switch to the per-CPU
 * stack in the high mapping and call tk_cpu_entry(cpu).
 */
        .type tk_common32, @function
tk_common32:
        movl    %cr4, %eax
#if defined(__x86_64__) || defined(TK_PAE)
        orl     $0x20, %eax                     /* CR4.PAE */
#else
        orl     $0x10, %eax                     /* CR4.PSE: 4 MiB pages */
#endif
        movl    %eax, %cr4
#ifdef __x86_64__
        movl    $tk_pml4, %eax
        movl    %eax, %cr3
        movl    $0xc0000080, %ecx               /* EFER */
        rdmsr
        orl     $0x100, %eax                    /* EFER.LME */
        wrmsr
        movl    %cr0, %eax
        orl     $0x80000001, %eax               /* PG | PE */
        movl    %eax, %cr0
        ljmp    $TK_CS64, $tk_long64

        .code64
tk_long64:
        /* Mark this as the outermost frame for debuggers' unwinders. */
        .cfi_startproc simple
        .cfi_def_cfa rsp, 0
        .cfi_undefined rip
        movl    $TK_DS, %eax
        movl    %eax, %ds
        movl    %eax, %es
        movl    %eax, %ss
        movl    %eax, %fs
        movl    %eax, %gs
        movl    %edi, %eax
        incl    %eax
        shlq    $TK_STACK_SHIFT, %rax
        movabsq $tk_stacks, %rsp
        addq    %rax, %rsp
        xorl    %ebp, %ebp
        movabsq $tk_cpu_entry, %rax
        call    *%rax
1:      cli
        hlt
        jmp     1b
        .cfi_endproc
        .code32
#else
#ifdef TK_PAE
        movl    $tk_pdpt, %eax
#else
        movl    $tk_pd32, %eax
#endif
        movl    %eax, %cr3
        movl    %cr0, %eax
        orl     $0x80000001, %eax               /* PG | PE */
        movl    %eax, %cr0
        jmp     1f
1:
        .cfi_startproc simple
        .cfi_def_cfa esp, 0
        .cfi_undefined eip
        movl    %edi, %eax
        incl    %eax
        shll    $TK_STACK_SHIFT, %eax
        addl    $tk_stacks, %eax
        movl    %eax, %esp
        xorl    %ebp, %ebp
        pushl   %edi
        movl    $tk_cpu_entry, %eax
        call    *%eax
1:      cli
        hlt
        jmp     1b
        .cfi_endproc
#endif
        .size tk_common32, . - tk_common32

/*
 * Real-mode trampoline for INIT-SIPI-SIPI. Copied to TK_TRAMPOLINE_PA by
 * the BSP; runs with CS = TK_TRAMPOLINE_PA >> 4, IP = 0. Only the GDT
 * descriptor is addressed relative to the copy; the GDT itself and the
 * 32-bit target are absolute physical addresses in this section.
 */
        .code16
        .globl tk_trampoline_start, tk_trampoline_end
tk_trampoline_start:
        cli
        cld
        movw    %cs, %ax
        movw    %ax, %ds
        lgdtl   (tk_trampoline_gdtr - tk_trampoline_start)
        movl    %cr0, %eax
        orl     $1, %eax
        movl    %eax, %cr0
        ljmpl   $TK_CS32, $tk_sipi_entry32
        .balign 8
tk_trampoline_gdtr:
        .word   tk_boot_gdt_end - tk_boot_gdt - 1
        .long   tk_boot_gdt
tk_trampoline_end:
        .code32

        .section .boot.data, "aw"
        .balign 16
        .globl tk_boot_gdt
tk_boot_gdt:
        .quad   0                               /* 0x00 null */
        .quad   0x00cf9a000000ffff              /* 0x08 flat 32-bit code */
        .quad   0x00cf92000000ffff              /* 0x10 flat data */
        .quad   0x00af9a000000ffff              /* 0x18 64-bit code */
tk_boot_gdt_end:
        .balign 8
        .word   0
tk_boot_gdtr:
        .word   tk_boot_gdt_end - tk_boot_gdt - 1
        .long   tk_boot_gdt

tk_msg_entry:
        .asciz  "tk: pvh entry\n"

        .balign 4
        .globl tk_start_info_pa
tk_start_info_pa:
        .long   0                               /* %ebx at PVH entry */
        .globl tk_sipi_next_cpu
tk_sipi_next_cpu:
        .long   1                               /* next SIPI cpu index */

/* ------------------------------------------------------------------ */
/* Static page tables (see layout.h for the resulting map).            */
/* ------------------------------------------------------------------ */
        .section .boot.pgtables, "aw"
        .balign 4096
#ifdef __x86_64__
        .globl tk_pml4
tk_pml4:
        PTE(tk_pdpt_ident + PG_P + PG_RW)
        .fill   510, 8, 0
        PTE(tk_pdpt_high + PG_P + PG_RW)        /* 0xffffff8000000000 */

tk_pdpt_ident:
        PTE(tk_pd_ident + 0x0000 + PG_P + PG_RW)
        PTE(tk_pd_ident + 0x1000 + PG_P + PG_RW)
        PTE(tk_pd_ident + 0x2000 + PG_P + PG_RW)
        PTE(tk_pd_ident + 0x3000 + PG_P + PG_RW)
        .fill   508, 8, 0

tk_pdpt_high:
        .fill   510, 8, 0
        PTE(tk_pd_high + PG_P + PG_RW)          /* 0xffffffff80000000 */
        .quad   0

tk_pd_ident:                                    /* 4 pages: 0 - 4 GiB */
        .set    i, 0
        .rept   2048
        PTE((i << 21) + PG_P + PG_RW + PG_PS)
        .set    i, i + 1
        .endr

tk_pd_high:                                     /* TK_KBASE + 0 - 1 GiB */
        PTE(tk_pt_high + PG_P + PG_RW)
        .set    i, 1
        .rept   511
        PTE((i << 21) + PG_P + PG_RW + PG_PS)
        .set    i, i + 1
        .endr
#elif defined(TK_PAE)
        .globl tk_pdpt
tk_pdpt:                                        /* PAE: 4 entries, P only */
        PTE(tk_pd_ident + 0x0000 + PG_P)
        PTE(tk_pd_ident + 0x1000 + PG_P)
        PTE(tk_pd_ident + 0x2000 + PG_P)
        PTE(tk_pd_high + PG_P)
        .balign 4096

tk_pd_ident:                                    /* 3 pages: 0 - 3 GiB */
        .set    i, 0
        .rept   1536
        PTE((i << 21) + PG_P + PG_RW + PG_PS)
        .set    i, i + 1
        .endr

tk_pd_high:                                     /* 0xc0000000 - 4 GiB */
        PTE(tk_pt_high + PG_P + PG_RW)
        .set    i, 1
        .rept   495                             /* phys 2 MiB - 0x3e000000 */
        PTE((i << 21) + PG_P + PG_RW + PG_PS)
        .set    i, i + 1
        .endr
        .set    i, 0x7f0
        .rept   16                              /* phys 0xfe000000 - 4 GiB */
        PTE((i << 21) + PG_P + PG_RW + PG_PS)
        .set    i, i + 1
        .endr
#else
        .globl tk_pd32
tk_pd32:                                        /* 2-level: 1024 x 4 bytes */
        .set    i, 0
        .rept   768                             /* identity 0 - 3 GiB */
        .long   (i << 22) + PG_P + PG_RW + PG_PS
        .set    i, i + 1
        .endr
        .long   tk_pt_high + PG_P + PG_RW       /* 0xc0000000: 4 KiB pages */
        .set    i, 1
        .rept   247                             /* phys 4 MiB - 0x3e000000 */
        .long   (i << 22) + PG_P + PG_RW + PG_PS
        .set    i, i + 1
        .endr
        .set    i, 1016
        .rept   8                               /* identity 0xfe000000 - 4 GiB */
        .long   (i << 22) + PG_P + PG_RW + PG_PS
        .set    i, i + 1
        .endr
#endif

#if defined(__x86_64__) || defined(TK_PAE)
tk_pt_high:                                     /* 4 KiB pages, phys 0-2 MiB */
        PTE(0)                                  /* TK_KBASE itself: unmapped */
        .set    i, 1
        .rept   511
        PTE((i << 12) + PG_P + PG_RW)
        .set    i, i + 1
        .endr
#else
tk_pt_high:                                     /* 4 KiB pages, phys 0-4 MiB */
        .long   0                               /* TK_KBASE itself: unmapped */
        .set    i, 1
        .rept   1023
        .long   (i << 12) + PG_P + PG_RW
        .set    i, i + 1
        .endr
#endif

/* ------------------------------------------------------------------ */
/* High part: linked at TK_KBASE + phys.                               */
/* ------------------------------------------------------------------ */

/* Xen writes hypercall stubs here (MSR from CPUID leaf base+2). */
        .section .text.hcpage, "ax"
        .balign 4096
        .globl tk_hypercall_page
tk_hypercall_page:
        .fill   4096, 1, 0xcc

        .text
#ifdef __x86_64__
        .code64
#endif

/* Exception stubs: push (error code or 0) and vector, then common path. */
#define HAS_ERRCODE(n) ((n) == 8 || (n) == 10 || (n) == 11 || (n) == 12 || \
                        (n) == 13 || (n) == 14 || (n) == 17 || (n) == 21 || \
                        (n) == 29 || (n) == 30)

        .macro TRAP_STUB n
        .balign 16
tk_trap_stub_\n:
        .if HAS_ERRCODE(\n)
        .else
        push    $0
        .endif
        push    $\n
        jmp     tk_trap_common
        .endm

#define TK_VECTORS 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20, \
                   21,22,23,24,25,26,27,28,29,30,31
        .irp    n, TK_VECTORS
        TRAP_STUB \n
        .endr

        .type tk_trap_common, @function
tk_trap_common:
#ifdef __x86_64__
        movq    %rsp, %rdi                      /* struct tk_trap_frame * */
        andq    $-16, %rsp
        call    tk_trap
#else
        movl    %esp, %eax
        pushl   %eax
        call    tk_trap
#endif
1:      cli
        hlt
        jmp     1b
        .size tk_trap_common, . - tk_trap_common

        .section .rodata
        .balign 8
        .globl tk_trap_stubs
tk_trap_stubs:
        .irp    n, TK_VECTORS
#ifdef __x86_64__
        .quad   tk_trap_stub_\n
#else
        .long   tk_trap_stub_\n
#endif
        .endr

        .section .note.GNU-stack, "", @progbits
