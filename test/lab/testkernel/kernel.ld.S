/* Linker script for the gdbsx test kernel (preprocessed with -m64/-m32). */
#include "layout.h"
#undef i386

#ifdef __x86_64__
OUTPUT_FORMAT("elf64-x86-64")
OUTPUT_ARCH(i386:x86-64)
#else
OUTPUT_FORMAT("elf32-i386")
OUTPUT_ARCH(i386)
#endif
ENTRY(tk_pvh_entry32)

PHDRS
{
    boot PT_LOAD FLAGS(7);      /* identity part: entry, GDT, page tables */
    text PT_LOAD FLAGS(5);
    data PT_LOAD FLAGS(6);
    note PT_NOTE FLAGS(4);
}

SECTIONS
{
    . = TK_PHYS_BASE;
    .note.Xen : { *(.note.Xen) } :boot :note
    .boot : {
        *(.boot.text)
        *(.boot.data)
        . = ALIGN(4096);
        *(.boot.pgtables)
        . = ALIGN(4096);
    } :boot

    . += TK_KBASE;
    tk_text_start = .;
    .text : AT(ADDR(.text) - TK_KBASE) {
        *(.text.hcpage)
        *(.text .text.*)
    } :text
    .rodata : AT(ADDR(.rodata) - TK_KBASE) { *(.rodata .rodata.*) } :text
    tk_text_end = .;

    . = ALIGN(4096);
    .data : AT(ADDR(.data) - TK_KBASE) { *(.data .data.*) } :data
    .bss : AT(ADDR(.bss) - TK_KBASE) {
        __bss_start = .;
        *(.bss .bss.*) *(COMMON)
        . = ALIGN(16);
        __bss_end = .;
    } :data
    tk_image_end = .;

    __bss_start_pa = __bss_start - TK_KBASE;
    __bss_end_pa = __bss_end - TK_KBASE;

    /DISCARD/ : { *(.eh_frame) *(.comment) *(.note.gnu.property) *(.note.GNU-stack) }
}
