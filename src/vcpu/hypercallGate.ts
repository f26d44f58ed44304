// Whether an x86 instruction can enter the hypervisor or the guest's kernel on purpose:
// a hypercall (vmcall, vmmcall; a PV guest's syscall into Xen's hypercall page, or int
// 0x82 for 32-bit PV), a system call, a software interrupt. One such instruction may
// change the guest's memory map (a balloon's decrease_reservation, a grant map), so
// foreign mappings are not kept across a single step of it (Guest.stepKeeps).

/** Legacy prefixes and (in 64-bit code) REX: skipped before the opcode. */
function isPrefix(b: number, width: 32 | 64): boolean {
  if (width === 64 && b >= 0x40 && b <= 0x4f) return true;
  return b === 0x66 || b === 0x67 || b === 0xf0 || b === 0xf2 || b === 0xf3 ||
    b === 0x26 || b === 0x2e || b === 0x36 || b === 0x3e || b === 0x64 || b === 0x65;
}

/**
 * True if the instruction at the start of `code` is one of those gates, or cannot be
 * told (too few bytes): the caller then takes the safe side.
 */
export function mayEnterHypervisor(code: Buffer, width: 32 | 64): boolean {
  let i = 0;
  while (i < code.length && i < 15 && isPrefix(code[i], width)) i++;
  if (i >= code.length) return true;
  const op = code[i];
  // int n, into, int1 (int3 is a #BP: the guest's handler or ours, no memory map change).
  if (op === 0xcd || op === 0xce || op === 0xf1) return true;
  if (op !== 0x0f) return false;
  if (i + 1 >= code.length) return true;
  const op2 = code[i + 1];
  if (op2 === 0x05 || op2 === 0x34) return true; // syscall, sysenter
  if (op2 !== 0x01) return false;
  if (i + 2 >= code.length) return true;
  const modrm = code[i + 2];
  return modrm === 0xc1 || modrm === 0xd9; // vmcall, vmmcall
}
