// The registers a debugger is shown: the guest's register list (src/vcpu/registers.ts)
// less those this guest's VCPU context cannot hold at all. Xen's compat context for
// 32-bit PV guests has no fs/gs base: described and answered as unavailable ('xx'),
// gdb shows them as <unavailable> but LLDB as 0xcccccccc, so they are not described.
// The target XML, the `g` block, `p`/`P` numbers and the stop reply's expedited
// registers all use this numbering; `guestRegno` maps it back to the guest's.
import type { Guest } from '../vcpu/guest';
import { Arch, RegDef, contextLayoutFor } from '../vcpu/registers';
import type { ContextLayout } from '../xg/context';

export interface RegView {
  /** The registers shown, numbered as the client sees them. */
  readonly arch: Arch;
  /** The guest's register number of each register shown. */
  readonly guestRegno: readonly number[];
}

function held(r: RegDef, layout: ContextLayout): boolean {
  switch (r.src.kind) {
    case 'ctx': return layout.fields[r.src.field] !== undefined;
    case 'gs_base': return layout.fields.gs_base_kernel !== undefined && layout.fields.gs_base_user !== undefined;
    default: return true; // the FXSAVE image is in every layout
  }
}

export function regView(g: Pick<Guest, 'arch' | 'width' | 'hvm'>): RegView {
  const layout = contextLayoutFor(g.width, g.hvm);
  const guestRegno = g.arch.regs.map((_, i) => i).filter((i) => held(g.arch.regs[i], layout));
  if (guestRegno.length === g.arch.regs.length) return { arch: g.arch, guestRegno };
  const regs = guestRegno.map((i) => g.arch.regs[i]);
  const offsets: number[] = [];
  let off = 0;
  for (const r of regs) {
    offsets.push(off);
    off += r.bits / 8;
  }
  const shown = (guestNo: number) => {
    const i = guestRegno.indexOf(guestNo);
    if (i < 0) throw new Error(`register ${g.arch.regs[guestNo].name} must be shown`);
    return i;
  };
  const arch: Arch = {
    ...g.arch, regs, offsets, gSize: off,
    pcReg: shown(g.arch.pcReg), spReg: shown(g.arch.spReg), fpReg: shown(g.arch.fpReg),
  };
  return { arch, guestRegno };
}
