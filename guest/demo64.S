# demo64.S: the simulated hypervisor's demo guest kernel, x86-64 (GNU as, AT&T syntax).
#
# Entry (set up by src/xg/sim/loader.ts and vcpu-context.ts), on every VCPU:
#   rdi     = this VCPU's number
#   rsp     = top of this VCPU's stack (in the direct map)
#   gs base = this VCPU's per-cpu area: gs:0 = VCPU number, gs:8 = the area's address
# Only the instruction subset listed in docs/sim.md may be used here; anything else
# is #UD and crashes the guest.

        .set    .LMAX_VCPUS, 128
        .set    .LTICK_WORK, 4          # loop iterations per timer tick (a power of 2)
        .set    .LRARE, 32              # demo_rare every this many iterations (a power of 2)

        .text

# demo_start(vcpu): check the CPU, then at each tick of the timer do a little visible
# work and halt until the next one, like a kernel's idle loop.
        .globl  demo_start
        .type   demo_start, @function
demo_start:
        mov     %rdi, %r12              # r12 = VCPU number (callee-saved)
        xor     %r13d, %r13d            # r13 = iteration count
        mov     %gs:0, %rax             # the per-cpu area knows the number too
        cmp     %rax, %r12
        jne     demo_panic
        call    demo_selftest
        lock incl demo_online(%rip)
.Lloop:
        mov     %r12, %rdi
        call    demo_tick
        mov     %r13, %rdi
        and     $7, %edi
        add     %r12, %rdi              # VCPU n works n iterations more: rips drift apart
        call    demo_work
        lock incq demo_counter(%rip)
        inc     %r13
        test    $.LRARE - 1, %r13b
        jnz     1f
        call    demo_rare
1:      test    $.LTICK_WORK - 1, %r13b
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

# demo_tick(vcpu): demo_ticks[vcpu]++.
        .globl  demo_tick
        .type   demo_tick, @function
demo_tick:
        lea     demo_ticks(%rip), %rax
        incq    (%rax,%rdi,8)
        ret
        .size   demo_tick, . - demo_tick

# demo_work(n): a little arithmetic loop of n+1 rounds; result in rax and demo_last_work.
        .globl  demo_work
        .type   demo_work, @function
demo_work:
        push    %rbp
        mov     %rsp, %rbp
        push    %rbx
        lea     1(%rdi), %rcx           # rounds
        xor     %eax, %eax
        mov     $1, %ebx
.Lwork:
        add     %rbx, %rax
        shl     $1, %rbx
        xor     $0x5a, %rax
        cmp     $1000, %rax
        jb      2f
        sub     $1000, %rax
2:      dec     %rcx
        jnz     .Lwork
        mov     %rax, demo_last_work(%rip)
        pop     %rbx
        pop     %rbp
        ret
        .size   demo_work, . - demo_work

# demo_rare(): every .LRARE iterations; an indirect call and a look at the banner.
        .globl  demo_rare
        .type   demo_rare, @function
demo_rare:
        cli
        lock addq $1, demo_rare_count(%rip)
        sti
        movzbl  demo_banner(%rip), %eax
        cmp     $'X', %eax
        jne     demo_panic
        lea     demo_hook(%rip), %rax
        call    *%rax
        pause
        ret
        .size   demo_rare, . - demo_rare

# demo_hook(): reached through a register; returns -(~rare_count) = rare_count + 1.
        .type   demo_hook, @function
demo_hook:
        mov     demo_rare_count(%rip), %rax
        not     %rax
        neg     %rax
        ret
        .size   demo_hook, . - demo_hook

# demo_selftest(): flags and 64-bit arithmetic the loop relies on; demo_panic on a mismatch.
        .globl  demo_selftest
        .type   demo_selftest, @function
demo_selftest:
        push    %rbx
        mov     $0xffffffff, %eax       # carry out of the low half
        add     $1, %rax
        mov     $1, %rbx
        shl     $32, %rbx
        cmp     %rbx, %rax
        jne     demo_panic
        mov     $-5, %rax               # signed vs unsigned compares
        cmp     $3, %rax
        jge     demo_panic
        jb      demo_panic
        mov     $0x7fffffffffffffff, %rax
        add     $1, %rax                # overflow into the sign
        jno     demo_panic
        jns     demo_panic
        sar     $63, %rax
        cmp     $-1, %rax
        jne     demo_panic
        movsbq  demo_minus_one(%rip), %rbx
        cmp     %rax, %rbx
        jne     demo_panic
        pushq   $-2
        pop     %rbx
        inc     %rbx
        inc     %rbx
        jnz     demo_panic
        pop     %rbx
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
        .balign 8
demo_counter:
        .quad   0
        .size   demo_counter, 8

        .bss
        .balign 8
        .globl  demo_ticks
        .type   demo_ticks, @object
demo_ticks:
        .skip   8 * .LMAX_VCPUS
        .size   demo_ticks, . - demo_ticks
        .globl  demo_rare_count
        .type   demo_rare_count, @object
demo_rare_count:
        .skip   8
        .size   demo_rare_count, 8
        .globl  demo_last_work
        .type   demo_last_work, @object
demo_last_work:
        .skip   8
        .size   demo_last_work, 8
        .globl  demo_online
        .type   demo_online, @object
demo_online:
        .skip   4
        .size   demo_online, 4
