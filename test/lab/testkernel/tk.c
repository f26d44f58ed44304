/*
 * gdbsx test kernel: a tiny PVH guest whose symbols the debugger tests know.
 *
 * Every CPU runs tk_loop(cpu) forever: tk_tick(cpu) bumps tk_ticks[cpu] and
 * tk_counter, tk_work(n) computes 1 + 2 + ... + n into tk_work_result[cpu].
 *
 * Built with -O0 -g so that every symbol, argument and local is in DWARF
 * and in memory where a debugger expects it.
 */
#include "layout.h"
#include "xenabi.h"

#define NOINLINE __attribute__((noinline))
#define USED     __attribute__((used))

/* ------------------------------------------------------------------ */
/* Symbols checked by the debugger tests.                              */
/* ------------------------------------------------------------------ */

/* "gdbsx test kernel x86_64" or "gdbsx test kernel i386". */
const char tk_banner[] = "gdbsx test kernel " TK_ARCH_NAME;

/* Always 0x600dcafe; writable so tests can write and read back. */
volatile u32 tk_magic = TK_MAGIC;

/* Total tk_tick() calls over all CPUs (atomic increments). */
volatile u64 tk_counter;

/* Per-CPU tk_tick() calls; slot = cpu index (= Xen vcpu id on Xen). */
volatile u64 tk_ticks[TK_MAX_CPUS];

/* Last tk_work() result per CPU: n * (n + 1) / 2 for the n passed. */
volatile u64 tk_work_result[TK_MAX_CPUS];

/* Last n passed to tk_work() per CPU (100 .. 163). */
volatile u32 tk_work_arg[TK_MAX_CPUS];

/* 1 once CPU i runs tk_loop(); tk_cpus_online counts them. */
volatile u32 tk_cpu_online[TK_MAX_CPUS];
volatile u32 tk_cpus_online;

/* 1 once the BSP finished bringing up secondary CPUs. */
volatile u32 tk_boot_done;

/* 1 when running on Xen (CPUID "XenVMMXenVMM"), else 0. */
volatile u32 tk_on_xen;

/* Scratch buffer for memory-write tests; the kernel never touches it. */
volatile u8 tk_scratch[256];

/* A structure with a pointer member (4 or 8 bytes) for ptype/print tests. */
struct tk_info {
    u32 magic;                  /* TK_MAGIC */
    u32 ptr_size;               /* sizeof(void *) */
    const char *banner;         /* &tk_banner[0] */
    u64 kbase;                  /* TK_KBASE */
    u32 max_cpus;               /* TK_MAX_CPUS */
    u32 paging_levels;          /* 4 (x86_64), 2 (i386), 3 (i386 PAE build) */
};
const struct tk_info tk_info = {
    TK_MAGIC, sizeof(void *), tk_banner, (u64)TK_KBASE, TK_MAX_CPUS,
    TK_PAGING_LEVELS,
};

/* Copy of the hvm_start_info and its command line (QEMU -append, xl cmdline=). */
struct tk_start_info tk_boot_info;
char tk_cmdline[128];

/* Boot data in the identity-mapped part (boot.S). */
extern u32 tk_start_info_pa;
extern u32 tk_sipi_next_cpu;
extern char tk_ap_entry32[], tk_trampoline_start[], tk_trampoline_end[];
extern char tk_hypercall_page[];
extern const ulong tk_trap_stubs[32];

/* Per-CPU stacks; boot.S points cpu i at the top of tk_stacks[i]. */
u8 tk_stacks[TK_MAX_CPUS][TK_STACK_SIZE] __attribute__((aligned(16)));

/* ------------------------------------------------------------------ */
/* CPU helpers.                                                        */
/* ------------------------------------------------------------------ */

static inline void outb(u16 port, u8 v)  { asm volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { asm volatile("outw %0, %1" :: "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port)
{
    u8 v;
    asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline void cpu_relax(void) { asm volatile("pause" ::: "memory"); }
static inline void barrier(void) { asm volatile("" ::: "memory"); }

static inline void cpuid(u32 leaf, u32 *a, u32 *b, u32 *c, u32 *d)
{
    asm volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}

static inline void wrmsr(u32 msr, u64 v)
{
    asm volatile("wrmsr" :: "c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}

static inline ulong virt_to_phys(const void *p)
{
    ulong v = (ulong)p;
    return v >= (ulong)TK_KBASE ? v - (ulong)TK_KBASE : v;
}

/* Physical address -> pointer through the identity part of the map. */
static void *phys_to_ident(u64 pa)
{
#ifdef __x86_64__
    return pa < 0x100000000ull ? (void *)(ulong)pa : 0;
#else
    return (pa < 0xc0000000ull || (pa >= 0xfe000000ull && pa < 0x100000000ull))
        ? (void *)(ulong)pa : 0;
#endif
}

/* The compiler may emit calls to these for struct copies. */
USED void *memcpy(void *dst, const void *src, ulong n)
{
    u8 *d = dst;
    const u8 *s = src;

    while (n--)
        *d++ = *s++;
    return dst;
}

USED void *memset(void *dst, int c, ulong n)
{
    u8 *d = dst;

    while (n--)
        *d++ = (u8)c;
    return dst;
}

static void delay(u32 n)
{
    for (volatile u32 i = 0; i < n; i++)
        cpu_relax();
}

/* ------------------------------------------------------------------ */
/* Xen.                                                                */
/* ------------------------------------------------------------------ */

static u32 xen_cpuid_base;
static int have_hypercall_page;

static u32 find_xen_cpuid_base(void)
{
    u32 base, a, b, c, d;

    for (base = 0x40000000; base < 0x40010000; base += 0x100) {
        cpuid(base, &a, &b, &c, &d);
        /* "XenVMMXenVMM" */
        if (b == 0x566e6558 && c == 0x65584d4d && d == 0x4d4d566e &&
            a >= base + 2)
            return base;
    }
    return 0;
}

static long hypercall3(u32 nr, ulong a1, ulong a2, ulong a3)
{
    long ret;
    void *stub = tk_hypercall_page + nr * 32;

    if (!have_hypercall_page)
        return -XEN_ENOSYS;
#ifdef __x86_64__
    asm volatile("call *%[stub]"
                 : "=a"(ret), "+D"(a1), "+S"(a2), "+d"(a3)
                 : [stub] "r"(stub)
                 : "memory", "rcx", "r8", "r9", "r10", "r11");
#else
    asm volatile("call *%[stub]"
                 : "=a"(ret), "+b"(a1), "+c"(a2), "+d"(a3)
                 : [stub] "r"(stub)
                 : "memory", "esi", "edi");
#endif
    return ret;
}

static void xen_init(void)
{
    u32 a, b, c, d;

    xen_cpuid_base = find_xen_cpuid_base();
    if (!xen_cpuid_base)
        return;
    tk_on_xen = 1;
    /* Leaf base+2: eax = number of hypercall pages, ebx = MSR to write. */
    cpuid(xen_cpuid_base + 2, &a, &b, &c, &d);
    if (a < 1)
        return;
    wrmsr(b, virt_to_phys(tk_hypercall_page));
    have_hypercall_page = 1;
}

/* ------------------------------------------------------------------ */
/* Console: COM1 on bare metal/QEMU; on Xen the debug port 0xe9 (or    */
/* CONSOLEIO_write where Xen allows it) plus the PV console ring.      */
/* ------------------------------------------------------------------ */

static volatile u32 console_lock;
static int use_console_io;      /* 1: works, 0: untried, -1: refused */
static volatile struct tk_xencons_interface *pv_ring;
static u32 pv_evtchn;

static void lock(volatile u32 *l)
{
    while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
        while (*l)
            cpu_relax();
}

static void unlock(volatile u32 *l)
{
    __atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

static void serial_putc(char c)
{
    for (int i = 0; i < 100000 && !(inb(0x3f8 + 5) & 0x20); i++)
        cpu_relax();
    outb(0x3f8, c);
}

static int serial_ready;

static void serial_init(void)
{
    serial_ready = 1;
    outb(0x3f8 + 1, 0x00);      /* no interrupts */
    outb(0x3f8 + 3, 0x80);      /* DLAB */
    outb(0x3f8 + 0, 0x01);      /* 115200 baud */
    outb(0x3f8 + 1, 0x00);
    outb(0x3f8 + 3, 0x03);      /* 8n1 */
    outb(0x3f8 + 2, 0xc7);      /* FIFO */
    outb(0x3f8 + 4, 0x03);      /* DTR | RTS */
}

static void pv_console_init(void)
{
    struct tk_hvm_param p = { DOMID_SELF, 0, HVM_PARAM_CONSOLE_PFN, 0 };
    u64 pfn;

    if (hypercall3(HC_hvm_op, HVMOP_get_param, (ulong)&p, 0) || !p.value)
        return;
    pfn = p.value;
    p.index = HVM_PARAM_CONSOLE_EVTCHN;
    p.value = 0;
    if (hypercall3(HC_hvm_op, HVMOP_get_param, (ulong)&p, 0))
        return;
    pv_evtchn = (u32)p.value;
    pv_ring = phys_to_ident(pfn << 12);
}

static void pv_console_write(const char *s, u32 len)
{
    volatile struct tk_xencons_interface *r = pv_ring;
    u32 cons, prod;

    if (!r)
        return;
    cons = r->out_cons;
    prod = r->out_prod;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    for (u32 i = 0; i < len; i++) {
        if (s[i] == '\n') {
            if (prod - cons >= sizeof(r->out))
                break;
            r->out[prod++ & (sizeof(r->out) - 1)] = '\r';
        }
        if (prod - cons >= sizeof(r->out))
            break;
        r->out[prod++ & (sizeof(r->out) - 1)] = s[i];
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    r->out_prod = prod;
    hypercall3(HC_event_channel_op, EVTCHNOP_send, (ulong)&pv_evtchn, 0);
}

static void console_write(const char *s, u32 len)
{
    if (!tk_on_xen) {
        for (u32 i = 0; i < len; i++) {
            if (s[i] == '\n')
                serial_putc('\r');
            serial_putc(s[i]);
        }
        return;
    }
    /*
     * Domain U may use CONSOLEIO_write only on debug (VERBOSE_DEBUG)
     * hypervisors; otherwise fall back to the 0xe9 debug port that every
     * HVM/PVH domain has. Xen prints both as "(dN) ..." at guest log
     * level debug, i.e. visible with guest_loglvl=all.
     */
    if (use_console_io >= 0) {
        long rc = hypercall3(HC_console_io, CONSOLEIO_write, len, (ulong)s);
        use_console_io = rc < 0 ? -1 : 1;
    }
    if (use_console_io < 0)
        for (u32 i = 0; i < len; i++)
            outb(XEN_HVM_DEBUGCONS_IOPORT, s[i]);
    pv_console_write(s, len);
}

/* 64-by-32 division without libgcc (the i386 build must not need it). */
static u64 divmod(u64 n, u32 d, u32 *rem)
{
    u64 q = 0, r = 0;

    for (int bit = 63; bit >= 0; bit--) {
        r = (r << 1) | ((n >> bit) & 1);
        if (r >= d) {
            r -= d;
            q |= 1ull << bit;
        }
    }
    *rem = (u32)r;
    return q;
}

/* Minimal printf: %s %c %d %u %x %p with 'l' (long) / 'll' (64-bit). */
static char *fmt_num(char *end, u64 v, u32 base)
{
    u32 digit;

    *--end = 0;
    do {
        v = divmod(v, base, &digit);
        *--end = "0123456789abcdef"[digit];
    } while (v);
    return end;
}

static u32 tk_vformat(char *buf, u32 size, const char *fmt, __builtin_va_list ap)
{
    u32 n = 0;

#define EMIT(ch) do { if (n < size) buf[n++] = (ch); } while (0)
    for (; *fmt; fmt++) {
        char tmp[24], *p;
        int longs = 0;
        u64 v;

        if (*fmt != '%') {
            EMIT(*fmt);
            continue;
        }
        fmt++;
        while (*fmt == 'l') {
            longs++;
            fmt++;
        }
        switch (*fmt) {
        case 's':
            for (p = __builtin_va_arg(ap, char *); p && *p; p++)
                EMIT(*p);
            break;
        case 'c':
            EMIT((char)__builtin_va_arg(ap, int));
            break;
        case 'd':
            if (longs >= 2)
                v = (u64)__builtin_va_arg(ap, long long);
            else if (longs == 1)
                v = (u64)(long long)__builtin_va_arg(ap, long);
            else
                v = (u64)(long long)__builtin_va_arg(ap, int);
            if ((long long)v < 0) {
                EMIT('-');
                v = -v;
            }
            for (p = fmt_num(tmp + sizeof(tmp), v, 10); *p; p++)
                EMIT(*p);
            break;
        case 'u':
        case 'x':
            if (longs >= 2)
                v = __builtin_va_arg(ap, u64);
            else if (longs == 1)
                v = __builtin_va_arg(ap, ulong);
            else
                v = __builtin_va_arg(ap, u32);
            for (p = fmt_num(tmp + sizeof(tmp), v, *fmt == 'u' ? 10 : 16); *p; p++)
                EMIT(*p);
            break;
        case 'p':
            EMIT('0');
            EMIT('x');
            for (p = fmt_num(tmp + sizeof(tmp), (ulong)__builtin_va_arg(ap, void *), 16); *p; p++)
                EMIT(*p);
            break;
        case 0:
            fmt--;
            break;
        default:
            EMIT('%');
            EMIT(*fmt);
            break;
        }
    }
#undef EMIT
    return n;
}

static void tk_vprintf(const char *fmt, __builtin_va_list ap)
{
    char buf[160];
    u32 n = tk_vformat(buf, sizeof(buf), fmt, ap);

    lock(&console_lock);
    console_write(buf, n);
    unlock(&console_lock);
}

/*
 * Raw output for early boot traces and the trap handler: no lock, no
 * hypercall. On Xen (or before Xen is detected) the 0xe9 debug port,
 * which Xen prints as "(dN) ..."; bare metal/QEMU: COM1 (and 0xe9, seen
 * with QEMU's -debugcon).
 */
static void raw_write(const char *s, u32 len)
{
    for (u32 i = 0; i < len; i++)
        outb(XEN_HVM_DEBUGCONS_IOPORT, s[i]);
    if (!tk_on_xen && serial_ready)
        for (u32 i = 0; i < len; i++) {
            if (s[i] == '\n')
                serial_putc('\r');
            serial_putc(s[i]);
        }
}

__attribute__((format(printf, 1, 2)))
static void tk_rawf(const char *fmt, ...)
{
    __builtin_va_list ap;
    char buf[160];
    u32 n;

    __builtin_va_start(ap, fmt);
    n = tk_vformat(buf, sizeof(buf), fmt, ap);
    __builtin_va_end(ap);
    raw_write(buf, n);
}

__attribute__((format(printf, 1, 2)))
static void tk_printf(const char *fmt, ...)
{
    __builtin_va_list ap;

    __builtin_va_start(ap, fmt);
    tk_vprintf(fmt, ap);
    __builtin_va_end(ap);
}

/* ------------------------------------------------------------------ */
/* Exceptions: report and halt (no triple fault / silent reboot).      */
/* ------------------------------------------------------------------ */

struct tk_trap_frame {
    ulong vector, error, ip, cs, flags;
};

#ifdef __x86_64__
struct idt_gate {
    u16 off0, sel;
    u8 ist, type;
    u16 off1;
    u32 off2, reserved;
};
#define TK_CS TK_CS64
#else
struct idt_gate {
    u16 off0, sel;
    u8 zero, type;
    u16 off1;
};
#define TK_CS TK_CS32
#endif

static struct idt_gate tk_idt[32] __attribute__((aligned(16)));

static int current_cpu(void);

static volatile u32 tk_trap_depth[TK_MAX_CPUS];

/* Reports with raw output only, so a fault in the console path can't recurse. */
USED void tk_trap(struct tk_trap_frame *f)
{
    int cpu = current_cpu();
    ulong cr2;

    asm volatile("mov %%cr2, %0" : "=r"(cr2));
    if (cpu < 0 || cpu >= TK_MAX_CPUS || ++tk_trap_depth[cpu] == 1)
        tk_rawf("tk: cpu%d trap %u error %llx at %p cs %x flags %llx cr2 %p\n",
                cpu, (u32)f->vector, (u64)f->error, (void *)f->ip,
                (u32)f->cs, (u64)f->flags, (void *)cr2);
    for (;;)
        asm volatile("cli; hlt");
}

static void idt_init(void)
{
    for (int v = 0; v < 32; v++) {
        ulong a = tk_trap_stubs[v];

        tk_idt[v].off0 = (u16)a;
        tk_idt[v].sel = TK_CS;
        tk_idt[v].type = 0x8e;          /* present, DPL0, interrupt gate */
        tk_idt[v].off1 = (u16)(a >> 16);
#ifdef __x86_64__
        tk_idt[v].off2 = (u32)(a >> 32);
#endif
    }
}

static void idt_load(void)
{
    struct {
        u16 limit;
        ulong base;
    } __attribute__((packed)) d = { sizeof(tk_idt) - 1, (ulong)tk_idt };

    asm volatile("lidt %0" :: "m"(d));
}

/* The cpu index is recovered from the stack pointer. */
static int current_cpu(void)
{
    ulong sp = (ulong)&sp;

    return (int)((sp - (ulong)tk_stacks) >> TK_STACK_SHIFT);
}

/* ------------------------------------------------------------------ */
/* The loop the debugger tests look at.                                */
/* ------------------------------------------------------------------ */

/* Atomic 64-bit increment (lock cmpxchg8b loop on i386, no libatomic). */
static void atomic_inc64(volatile u64 *p)
{
#ifdef __x86_64__
    asm volatile("lock incq %0" : "+m"(*p) :: "cc");
#else
    u32 lo, hi;

    asm volatile("movl (%2), %%eax\n\t"
                 "movl 4(%2), %%edx\n"
                 "1:\tmovl %%eax, %%ebx\n\t"
                 "movl %%edx, %%ecx\n\t"
                 "addl $1, %%ebx\n\t"
                 "adcl $0, %%ecx\n\t"
                 "lock cmpxchg8b (%2)\n\t"
                 "jnz 1b"
                 : "=&a"(lo), "=&d"(hi)
                 : "S"(p)
                 : "ebx", "ecx", "memory", "cc");
#endif
}

NOINLINE void tk_tick(int cpu)
{
    tk_ticks[cpu]++;
    atomic_inc64(&tk_counter);
}

NOINLINE u64 tk_work(u32 n)
{
    u64 sum = 0;

    for (u32 i = 1; i <= n; i++)
        sum += i;
    return sum;
}

NOINLINE void tk_loop(int cpu)
{
    u32 iter = 0;

    for (;;) {
        u32 n = 100 + (iter & 63);

        tk_tick(cpu);
        tk_work_arg[cpu] = n;
        tk_work_result[cpu] = tk_work(n);
        iter++;
        /* Let dom0 and the other VCPU run now and then on a busy host. */
        if (tk_on_xen && (iter & 1023) == 0)
            hypercall3(HC_sched_op, SCHEDOP_yield, 0, 0);
        cpu_relax();
    }
}

/*
 * Command line "idle1" (the profiler's lab test): CPU 1 does no work but blocks in
 * Xen (SCHEDOP_block; no event ever comes, so it stays blocked), an idle VCPU.
 */
static int cmdline_has(const char *w)
{
    for (u32 i = 0; tk_cmdline[i]; i++) {
        u32 j = 0;
        while (w[j] && tk_cmdline[i + j] == w[j])
            j++;
        if (!w[j])
            return 1;
    }
    return 0;
}

NOINLINE void tk_idle(int cpu)
{
    (void)cpu;
    for (;;)
        hypercall3(HC_sched_op, SCHEDOP_block, 0, 0);
}

/* ------------------------------------------------------------------ */
/* Secondary CPUs.                                                     */
/* ------------------------------------------------------------------ */

static int wait_online(u32 cpu, u32 spins)
{
    for (u32 i = 0; i < spins; i++) {
        if (tk_cpu_online[cpu])
            return 1;
        if (tk_on_xen && (i & 255) == 0)
            hypercall3(HC_sched_op, SCHEDOP_yield, 0, 0);
        cpu_relax();
    }
    return tk_cpu_online[cpu] != 0;
}

/*
 * PVH: VCPUOP_initialise with a vcpu_hvm_context (32-bit flat protected
 * mode, paging off, like the PVH boot entry), then VCPUOP_up. The new
 * VCPU enters tk_ap_entry32 with %edi = its vcpu id.
 * Returns the number of VCPUs started, or -1 if VCPUOP is not usable.
 */
static int xen_start_vcpus(void)
{
    int started = 0;

    for (u32 v = 1; v < TK_MAX_CPUS; v++) {
        struct tk_vcpu_hvm_context ctx;
        struct tk_vcpu_hvm_x86_32 *r = &ctx.cpu_regs.x86_32;
        long rc;

        memset(&ctx, 0, sizeof(ctx));
        ctx.mode = VCPU_HVM_MODE_32B;
        r->eip = (u32)(ulong)tk_ap_entry32;
        r->edi = v;
        r->eflags = 0x2;
        r->cr0 = 0x11;                          /* PE | ET */
        r->cs_limit = r->ds_limit = r->ss_limit = r->es_limit = 0xffffffff;
        r->cs_ar = 0xc9b;                       /* 32-bit code, G, P */
        r->ds_ar = r->ss_ar = r->es_ar = 0xc93; /* data, G, P */
        r->tr_limit = 0x67;
        r->tr_ar = 0x8b;                        /* busy 32-bit TSS */

        rc = hypercall3(HC_vcpu_op, VCPUOP_initialise, v, (ulong)&ctx);
        if (rc == -XEN_ENOENT)
            break;                              /* no such vcpu */
        if (rc < 0) {
            tk_printf("tk: VCPUOP_initialise(%u) failed: %d\n", v, (int)rc);
            return started ? started : -1;
        }
        rc = hypercall3(HC_vcpu_op, VCPUOP_up, v, 0);
        if (rc < 0) {
            tk_printf("tk: VCPUOP_up(%u) failed: %d\n", v, (int)rc);
            return started ? started : -1;
        }
        if (!wait_online(v, 50000000))
            tk_printf("tk: cpu%u did not come up (yet)\n", v);
        started++;
    }
    return started;
}

/* QEMU fw_cfg: number of CPUs (0 if not QEMU). */
static u32 qemu_nr_cpus(void)
{
    char sig[4];
    u32 n;

    outw(0x510, 0x0000);                        /* FW_CFG_SIGNATURE */
    for (int i = 0; i < 4; i++)
        sig[i] = inb(0x511);
    if (sig[0] != 'Q' || sig[1] != 'E' || sig[2] != 'M' || sig[3] != 'U')
        return 0;
    outw(0x510, 0x0005);                        /* FW_CFG_NB_CPUS */
    n = inb(0x511);
    n |= (u32)inb(0x511) << 8;
    return n;
}

/* INIT-SIPI-SIPI to all other CPUs via the xAPIC; they take tickets. */
static void sipi_start_cpus(void)
{
    volatile u32 *apic = phys_to_ident(0xfee00000);
    u8 *tramp = phys_to_ident(TK_TRAMPOLINE_PA);
    u32 want = tk_on_xen ? 0 : qemu_nr_cpus();

    if (want > TK_MAX_CPUS)
        want = TK_MAX_CPUS;
    memcpy(tramp, tk_trampoline_start,
                     tk_trampoline_end - tk_trampoline_start);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);

    apic[0xf0 / 4] |= 0x1ff;                    /* SVR: enable, vector 0xff */
    apic[0x310 / 4] = 0;
    apic[0x300 / 4] = 0x000c4500;               /* INIT, all excluding self */
    delay(100000);
    for (int i = 0; i < 2; i++) {
        apic[0x310 / 4] = 0;
        apic[0x300 / 4] = 0x000c4600 | TK_SIPI_VECTOR;  /* SIPI */
        delay(10000);
    }
    /* Wait for the CPUs QEMU says exist, or a while if unknown. */
    for (u32 i = 0; i < 20000000; i++) {
        if (want && tk_cpus_online >= want)
            break;
        if (!want && i > 2000000)
            break;
        cpu_relax();
    }
}

/* ------------------------------------------------------------------ */
/* Entry from boot.S.                                                  */
/* ------------------------------------------------------------------ */

static void mark_online(int cpu)
{
    tk_cpu_online[cpu] = 1;
    __atomic_add_fetch(&tk_cpus_online, 1, __ATOMIC_SEQ_CST);
}

static void copy_start_info(void)
{
    const struct tk_start_info *si = phys_to_ident(tk_start_info_pa);
    const char *cl;
    u32 i;

    if (!si || si->magic != XEN_HVM_START_MAGIC)
        return;
    tk_boot_info = *si;
    if (si->version < 1) {
        tk_boot_info.memmap_paddr = 0;
        tk_boot_info.memmap_entries = 0;
    }
    cl = si->cmdline_paddr ? phys_to_ident(si->cmdline_paddr) : 0;
    for (i = 0; cl && cl[i] && i < sizeof(tk_cmdline) - 1; i++)
        tk_cmdline[i] = cl[i];
    tk_cmdline[i] = 0;
}

static void bsp_main(void)
{
    int n;

    tk_rawf("tk: cpu0 paging on, in C\n");
    copy_start_info();
    xen_init();
    if (tk_on_xen) {
        tk_rawf("tk: xen cpuid base %x, hypercall page %p\n",
                xen_cpuid_base, (void *)tk_hypercall_page);
        pv_console_init();
        tk_rawf("tk: pv console ring %p evtchn %u\n", (void *)pv_ring, pv_evtchn);
    } else {
        serial_init();
    }
    mark_online(0);
    tk_printf("tk: up cpu0: %s on %s, start_info %p, cmdline '%s'\n",
              tk_banner, tk_on_xen ? "xen" : "bare x86",
              (void *)(ulong)tk_start_info_pa, tk_cmdline);

    n = tk_on_xen ? xen_start_vcpus() : -1;
    if (n < 0)
        sipi_start_cpus();
    tk_boot_done = 1;
    tk_printf("tk: %u cpu(s) online, tk_magic=%x\n", tk_cpus_online, tk_magic);
    tk_loop(0);
}

USED void tk_cpu_entry(int cpu)
{
    if (cpu == 0)
        idt_init();
    idt_load();
    if (cpu == 0)
        bsp_main();
    mark_online(cpu);
    tk_printf("tk: up cpu%d\n", cpu);
    if (cpu == 1 && tk_on_xen && cmdline_has("idle1"))
        tk_idle(cpu);
    tk_loop(cpu);
}
