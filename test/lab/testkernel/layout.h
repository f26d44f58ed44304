/*
 * Memory layout of the gdbsx test kernel, shared by C, assembly and the
 * linker script.
 *
 * Physical: the image is loaded at TK_PHYS_BASE (1 MiB). The first part
 * (.boot: PVH entry, GDT, boot page tables, SIPI trampoline source) is
 * linked at its physical address and runs with paging off / identity
 * mapped. Everything else (.text/.rodata/.data/.bss) is linked at
 * TK_KBASE + physical address.
 *
 * 64-bit build (long mode, 4-level paging):
 *   0x0000000000000000 - 0x00000000ffffffff  identity, 2 MiB pages
 *                                            (covers LAPIC, Xen special pages)
 *   0xffffffff80000000 - 0xffffffff801fffff  phys 0-2 MiB, 4 KiB pages;
 *                                            page 0 (TK_KBASE) NOT mapped
 *   0xffffffff80200000 - 0xffffffffbfffffff  phys 2 MiB - 1 GiB, 2 MiB pages
 *
 * 32-bit build (protected mode, 2-level paging, CR4.PSE):
 *   0x00000000 - 0xbfffffff  identity, 4 MiB pages
 *   0xc0000000 - 0xc03fffff  phys 0-4 MiB, 4 KiB pages; page 0 NOT mapped
 *   0xc0400000 - 0xfdffffff  phys 4 MiB - 0x3e000000, 4 MiB pages
 *   0xfe000000 - 0xffffffff  identity (LAPIC, Xen special pages), 4 MiB pages
 *
 * 32-bit PAE build (TK_PAE, optional, "make pae"): the same map with PAE
 * paging: identity and high part in 2 MiB pages, 4 KiB pages for
 * 0xc0000000 - 0xc01fffff (page 0 NOT mapped).
 */
#ifndef TK_LAYOUT_H
#define TK_LAYOUT_H

#define TK_PHYS_BASE      0x100000

#ifdef __x86_64__
#define TK_KBASE          0xffffffff80000000
#define TK_ARCH_NAME      "x86_64"
#define TK_PAGING_LEVELS  4
#else
#define TK_KBASE          0xc0000000
#define TK_ARCH_NAME      "i386"
#ifdef TK_PAE
#define TK_PAGING_LEVELS  3
#else
#define TK_PAGING_LEVELS  2
#endif
#endif

#define TK_MAX_CPUS       8
#define TK_STACK_SHIFT    14                  /* 16 KiB per CPU */
#define TK_STACK_SIZE     (1 << TK_STACK_SHIFT)

/* Real-mode trampoline for INIT-SIPI-SIPI (bare QEMU / fallback). */
#define TK_TRAMPOLINE_PA  0x8000
#define TK_SIPI_VECTOR    (TK_TRAMPOLINE_PA >> 12)

/* GDT selectors (same GDT in both builds; 0x18 is only used in 64-bit). */
#define TK_CS32           0x08
#define TK_DS             0x10
#define TK_CS64           0x18

#define TK_MAGIC          0x600dcafe

#endif
