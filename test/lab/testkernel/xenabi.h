/*
 * Minimal subset of the Xen guest ABI used by the gdbsx test kernel.
 *
 * Written for this project from the layouts documented in Xen's public
 * headers (xen.h, vcpu.h, hvm/hvm_vcpu.h, hvm/params.h, hvm/hvm_op.h,
 * event_channel.h, io/console.h, arch-x86/hvm/start_info.h, elfnote.h).
 * The kernel does not include those headers so that it builds with nothing
 * but gcc and binutils; the offsets below are checked with static asserts.
 */
#ifndef TK_XENABI_H
#define TK_XENABI_H

#ifndef __ASSEMBLER__
typedef unsigned char      u8;
typedef unsigned short     u16;
typedef unsigned int       u32;
typedef unsigned long long u64;
typedef unsigned long      ulong;
#endif

/* ELF note types (elfnote.h). */
#define XEN_ELFNOTE_XEN_VERSION     5
#define XEN_ELFNOTE_GUEST_OS        6
#define XEN_ELFNOTE_LOADER          8
#define XEN_ELFNOTE_PHYS32_ENTRY    18

/* Hypercall numbers (xen.h). Each stub in the hypercall page is 32 bytes. */
#define HC_console_io        18
#define HC_vcpu_op           24
#define HC_sched_op          29
#define HC_event_channel_op  32
#define HC_hvm_op            34

#define CONSOLEIO_write      0
#define VCPUOP_initialise    0
#define VCPUOP_up            1
#define VCPUOP_is_up         3
#define SCHEDOP_yield        0
#define SCHEDOP_block        1
#define EVTCHNOP_send        4
#define HVMOP_get_param      1
#define HVM_PARAM_CONSOLE_PFN     17
#define HVM_PARAM_CONSOLE_EVTCHN  18
#define DOMID_SELF           0x7ff0

#define XEN_ENOENT   2
#define XEN_EEXIST   17
#define XEN_ENOSYS   38

/* Port Xen's HVM emulation prints as "(dN) ..." on the Xen console. */
#define XEN_HVM_DEBUGCONS_IOPORT 0xe9

#define XEN_HVM_START_MAGIC 0x336ec578u

#ifndef __ASSEMBLER__
/* arch-x86/hvm/start_info.h: what %ebx points at on PVH entry. */
struct tk_start_info {
    u32 magic;
    u32 version;
    u32 flags;
    u32 nr_modules;
    u64 modlist_paddr;
    u64 cmdline_paddr;
    u64 rsdp_paddr;
    u64 memmap_paddr;       /* version >= 1 */
    u32 memmap_entries;     /* version >= 1 */
    u32 reserved;
};

/* hvm/hvm_vcpu.h: initial state for VCPUOP_initialise on HVM/PVH guests. */
#define VCPU_HVM_MODE_32B 0
#define VCPU_HVM_MODE_64B 1

struct tk_vcpu_hvm_x86_32 {
    u32 eax, ecx, edx, ebx, esp, ebp, esi, edi;
    u32 eip, eflags;
    u32 cr0, cr3, cr4;
    u32 pad1;
    u64 efer;
    u32 cs_base, ds_base, ss_base, es_base, tr_base;
    u32 cs_limit, ds_limit, ss_limit, es_limit, tr_limit;
    u16 cs_ar, ds_ar, ss_ar, es_ar, tr_ar;
    u16 pad2[3];
};

struct tk_vcpu_hvm_x86_64 {
    u64 rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi;
    u64 rip, rflags;
    u64 cr0, cr3, cr4, efer;
};

struct tk_vcpu_hvm_context {
    u32 mode;
    u32 pad;
    union {
        struct tk_vcpu_hvm_x86_32 x86_32;
        struct tk_vcpu_hvm_x86_64 x86_64;
    } cpu_regs;
};

/* hvm/hvm_op.h */
struct tk_hvm_param {
    u16 domid;
    u16 pad;
    u32 index;
    u64 value;
};

/* io/console.h: the PV console ring shared with xenconsoled. */
struct tk_xencons_interface {
    char in[1024];
    char out[2048];
    u32 in_cons, in_prod;
    u32 out_cons, out_prod;
};

#define TK_OFFSETOF(t, m) __builtin_offsetof(t, m)
_Static_assert(sizeof(struct tk_start_info) == 56, "start_info size");
_Static_assert(TK_OFFSETOF(struct tk_start_info, memmap_paddr) == 40, "memmap");
_Static_assert(TK_OFFSETOF(struct tk_vcpu_hvm_x86_32, efer) == 56, "efer");
_Static_assert(TK_OFFSETOF(struct tk_vcpu_hvm_x86_32, cs_ar) == 104, "cs_ar");
_Static_assert(sizeof(struct tk_vcpu_hvm_x86_32) == 120, "x86_32 size");
_Static_assert(sizeof(struct tk_vcpu_hvm_x86_64) == 112, "x86_64 size");
_Static_assert(TK_OFFSETOF(struct tk_vcpu_hvm_context, cpu_regs) == 8, "regs");
_Static_assert(sizeof(struct tk_hvm_param) == 16, "hvm_param");
_Static_assert(TK_OFFSETOF(struct tk_xencons_interface, out_prod) == 3084, "cons");
#endif /* !__ASSEMBLER__ */

#endif
