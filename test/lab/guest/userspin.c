/*
 * The lab guests' user-mode workload (see docs/lab.md, "The guests' workload").
 * Built twice on the host with gcc -static: USERSPIN_CPU=0 and =1. Each copy pins
 * itself to its CPU, maps one page at the same fixed user address in its own address
 * space, writes a known string there, locks the page and spins in user mode, so that a
 * debugger stopping the guest finds that VCPU in user mode in this process, with a
 * per-process value at one address.
 *
 * Every SPIN_MS of spinning it sleeps SLEEP_US: the VCPU stays in user mode nearly all
 * the time, while the kernel's scheduler and idle paths (__schedule, xen_safe_halt)
 * still run many times a second (the lab's breakpoint tests use them).
 *
 * The loop itself makes no system call: how many iterations make SPIN_MS is measured
 * once at the start. It used to read the clock every 2^18 iterations, and on a PVH guest
 * (no stable TSC under QEMU, so clock_gettime is a real syscall) dozens of syscalls a
 * second from user mode came with the lab's PVH triple faults: Xen's dumps showed VCPU 1
 * just after a syscall (rcx a user address, r11 the flags) with its pc set to Xen's own
 * vmrun return address (docs/lab.md).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifndef USERSPIN_CPU
#error "build with -DUSERSPIN_CPU=N"
#endif
#ifndef USERSPIN_ADDR
#define USERSPIN_ADDR 0x5a5a0000UL
#endif
#ifndef USERSPIN_TEXT
#error "build with -DUSERSPIN_TEXT='\"...\"'"
#endif
#define PAGE 4096UL
#define SPIN_MS 100
#define SLEEP_US 1000

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(USERSPIN_CPU, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) {
        fprintf(stderr, "userspin%d: sched_setaffinity: %s\n", USERSPIN_CPU, strerror(errno));
        return 1;
    }
    if (setpriority(PRIO_PROCESS, 0, 19) != 0)
        fprintf(stderr, "userspin%d: setpriority: %s\n", USERSPIN_CPU, strerror(errno));

    volatile char *page = mmap((void *)USERSPIN_ADDR, PAGE, PROT_READ | PROT_WRITE,
                               MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED || (unsigned long)page != USERSPIN_ADDR) {
        fprintf(stderr, "userspin%d: mmap at %#lx: %s\n", USERSPIN_CPU, USERSPIN_ADDR, strerror(errno));
        return 1;
    }
    memset((void *)page, 0, PAGE);
    strcpy((char *)page, USERSPIN_TEXT);
    if (mlock((const void *)page, PAGE) != 0)
        fprintf(stderr, "userspin%d: mlock: %s\n", USERSPIN_CPU, strerror(errno));

    printf("GDBSX-LAB-USER cpu=%d pid=%d addr=%#lx text=\"%s\"\n", USERSPIN_CPU, (int)getpid(),
           USERSPIN_ADDR, (const char *)page);
    fflush(stdout);

    /* How many iterations of the loop below make SPIN_MS (at least 2^18). */
    unsigned long n = 0, per_spin = 0;
    double t0 = now_ms();
    while (now_ms() - t0 < SPIN_MS) {
        for (unsigned long i = 0; i < 0x10000; i++, n++)
            if ((n & 0x3ffff) == 0)
                page[PAGE - 1] = (char)(n >> 20);
    }
    per_spin = n > 0x40000 ? n : 0x40000;
    for (;;) {
        for (unsigned long i = 0; i < per_spin; i++, n++)
            if ((n & 0x3ffff) == 0)
                page[PAGE - 1] = (char)(n >> 20); /* touch the page now and then */
        usleep(SLEEP_US);
    }
}
