// XEN_DOMCTL_gdbsx_guestmemio: gdbsx_guest_mem_io / dbg_rw_guest_mem. Page by page,
// translating through VCPU0's page tables (whatever VCPU the debugger looks at), and
// stopping at the first page that does not translate: the bytes before it are already
// copied, and the caller gets EFAULT.
import { SimDomain } from './domain';
import { CPU_RULES, PAGE_SIZE, UNMAPPED, XEN_PV_MEMIO_RULES, walk4, walkL2Only, walkPae } from './paging';

const MASK64 = (1n << 64n) - 1n;

function toRoot(v: bigint): number {
  return Number(BigInt.asUintN(52, v));
}

/**
 * Guest-virtual to guest-physical the way Xen's debugger path does it, or UNMAPPED.
 * Always VCPU0's *active* table (cpu.cr3; v->arch.cr3 in dbg_pv_va2mfn): with VCPU0 in
 * guest user mode that is the process's user PGD, where kernel addresses do not
 * translate. That is the gdbsx limitation the stub's own page walk works around.
 */
export function debuggerTranslate(d: SimDomain, va: bigint, pgd3val: bigint): number {
  const v0 = d.vcpus[0];
  if (!v0 || !v0.initialised) return UNMAPPED;
  const lo = Number(va & 0xffffffffn);
  const hi = Number((va >> 32n) & 0xffffffffn);
  if (d.hvm) {
    // paging_gva_to_gfn with VCPU0's paging mode: 32-bit PAE simply ignores the upper bits.
    return v0.cpu.long ? walk4(d.mem, toRoot(v0.cpu.cr3), lo, hi, CPU_RULES) : walkPae(d.mem, toRoot(v0.cpu.cr3), lo, CPU_RULES);
  }
  // dbg_pv_va2mfn: pgd3val, when given, is taken as the L2 table of the top GB.
  if (pgd3val !== 0n) return walkL2Only(d.mem, toRoot(pgd3val), lo, XEN_PV_MEMIO_RULES);
  if (d.width === 64) return walk4(d.mem, toRoot(v0.cpu.cr3), lo, hi, XEN_PV_MEMIO_RULES);
  // A 32-bit PV guest sits under a Xen-built L4 whose slot 0 is its PDPT: anything above
  // 4 GiB would reach Xen's own slots, which the simulation does not have.
  return hi !== 0 ? UNMAPPED : walkPae(d.mem, toRoot(v0.cpu.cr3), lo, XEN_PV_MEMIO_RULES);
}

/**
 * Copy `len` bytes between guest virtual `gva` and `buf`; returns the bytes NOT copied
 * (Xen's `remain`). Like Xen, a short caller buffer is not an error: those bytes are
 * skipped (Xen ignores copy_{to,from}_guest failures there).
 */
export function guestMemIo(d: SimDomain | undefined, gva: bigint, buf: Buffer, len: number, write: boolean, pgd3val: bigint): number {
  if (!d || d.dying) return len;
  let done = 0;
  while (done < len) {
    const addr = (gva + BigInt(done)) & MASK64;
    const off = Number(addr & 0xfffn);
    const chunk = Math.min(PAGE_SIZE - off, len - done);
    const pa = debuggerTranslate(d, addr, pgd3val);
    if (pa === UNMAPPED) break;
    const n = Math.max(0, Math.min(chunk, buf.length - done));
    if (write) buf.copy(d.mem, pa, done, done + n);
    else d.mem.copy(buf, done, pa, pa + n);
    done += chunk;
  }
  return len - done;
}
