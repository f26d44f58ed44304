# demo32.S: the simulated hypervisor's demo guest kernel, i386 with PAE paging
# (GNU as --32, AT&T syntax). Same behaviour as demo64.S.
#
# Entry (set up by src/xg/sim/loader.ts and vcpu-context.ts), on every VCPU:
#   eax = this VCPU's number (the kernel's regparm convention)
#   esp = top of this VCPU's stack (in the direct map at 0xc0000000)
# Only the instruction subset listed in docs/sim.md may be used here.

        .set    .LMAX_VCPUS, 128
        .set    .LTICK_WORK, 4          # loop iterations per timer tick (a power of 2)
        .set    .LRARE, 32              # demo_rare every this many iterations (a power of 2)

        .text

# demo_start(vcpu in eax): check the CPU, then at each tick of the timer do a little
# visible work and halt until the next one, like a kernel's idle loop.
        .globl  demo_start
        .type   demo_start, @function
demo_start:
        mov     %eax, %esi              # esi = VCPU number (callee-saved)
        xor     %edi, %edi              # edi = iteration count
        call    demo_selftest
        lock incl demo_online
.Lloop:
        mov     %esi, %eax
        call    demo_tick
        mov     %edi, %eax
        and     $7, %eax
        add     %esi, %eax              # VCPU n works n iterations more: eips drift apart
        call    demo_work
        lock incl demo_counter
        inc     %edi
        test    $.LRARE - 1, %edi
        jnz     1f
        call    demo_rare
1:      test    $.LTICK_WORK - 1, %edi
        jnz     .Lloop
        call    demo_idle               # this tick's work is done
        jmp     .Lloop
        .size   demo_start, . - demo_start

# demo_idle(): sleep until the next timer interrupt (Linux's default_idle: sti; hlt).
# The simulated timer resumes the VCPU after its hlt.
        .globl  demo_idle
        .type   demo_idle, @function
demo_idle:
        sti
        hlt
        ret
        .size   demo_idle, . - demo_idle

# demo_tick(vcpu in eax): demo_ticks[vcpu]++.
        .globl  demo_tick
        .type   demo_tick, @function
demo_tick:
        incl    demo_ticks(,%eax,4)
        ret
        .size   demo_tick, . - demo_tick

# demo_work(n in eax): a little arithmetic loop of n+1 rounds; result in eax and demo_last_work.
        .globl  demo_work
        .type   demo_work, @function
demo_work:
        push    %ebp
        mov     %esp, %ebp
        push    %ebx
        lea     1(%eax), %ecx           # rounds
        xor     %eax, %eax
        mov     $1, %ebx
.Lwork:
        add     %ebx, %eax
        shl     $1, %ebx
        xor     $0x5a, %eax
        cmp     $1000, %eax
        jb      2f
        sub     $1000, %eax
2:      dec     %ecx
        jnz     .Lwork
        mov     %eax, demo_last_work
        pop     %ebx
        pop     %ebp
        ret
        .size   demo_work, . - demo_work

# demo_rare(): every .LRARE iterations; an indirect call and a look at the banner.
        .globl  demo_rare
        .type   demo_rare, @function
demo_rare:
        cli
        lock addl $1, demo_rare_count
        sti
        movzbl  demo_banner, %eax
        cmp     $'X', %eax
        jne     demo_panic
        mov     $demo_hook, %eax
        call    *%eax
        pause
        ret
        .size   demo_rare, . - demo_rare

# demo_hook(): reached through a register; returns rare_count + 1.
        .type   demo_hook, @function
demo_hook:
        mov     demo_rare_count, %eax
        not     %eax
        neg     %eax
        ret
        .size   demo_hook, . - demo_hook

# demo_selftest(): flags the loop relies on; demo_panic on a mismatch.
        .globl  demo_selftest
        .type   demo_selftest, @function
demo_selftest:
        push    %ebx
        mov     $0xffffffff, %ebx
        add     $1, %ebx                # carry out, zero result
        jnc     demo_panic
        jnz     demo_panic
        mov     $-5, %ebx
        cmp     $3, %ebx
        jge     demo_panic
        jb      demo_panic
        mov     $0x7fffffff, %ebx
        inc     %ebx                    # overflow into the sign
        jno     demo_panic
        sar     $31, %ebx
        movsbl  demo_minus_one, %ecx
        cmp     %ebx, %ecx
        jne     demo_panic
        pushl   $-2
        pop     %ebx
        inc     %ebx
        inc     %ebx
        jnz     demo_panic
        pop     %ebx
        ret
        .size   demo_selftest, . - demo_selftest

# demo_panic(): the guest found something wrong; ud2 makes the domain crash.
        .globl  demo_panic
        .type   demo_panic, @function
demo_panic:
        ud2
        .size   demo_panic, . - demo_panic

        .section .rodata
        .globl  demo_banner
        .type   demo_banner, @object
demo_banner:
        .asciz  "Xen gdbsx demo guest: hello from the simulated hypervisor"
        .size   demo_banner, . - demo_banner
demo_minus_one:
        .byte   0xff

        .data
        .globl  demo_counter
        .type   demo_counter, @object
        .balign 4
demo_counter:
        .long   0
        .size   demo_counter, 4

        .bss
        .balign 4
        .globl  demo_ticks
        .type   demo_ticks, @object
demo_ticks:
        .skip   4 * .LMAX_VCPUS
        .size   demo_ticks, . - demo_ticks
        .globl  demo_rare_count
        .type   demo_rare_count, @object
demo_rare_count:
        .skip   4
        .size   demo_rare_count, 4
        .globl  demo_last_work
        .type   demo_last_work, @object
demo_last_work:
        .skip   4
        .size   demo_last_work, 4
        .globl  demo_online
        .type   demo_online, @object
demo_online:
        .skip   4
        .size   demo_online, 4
