// Z/z: software breakpoints the stub inserts itself (type 0) and hardware instruction
// breakpoints in the debug registers (type 1), where the target can trap them; where
// it cannot, an error with the reason (an empty Z0 reply would make gdb write the int3
// itself). Watchpoints (types 2-4) are not offered yet: the empty reply tells gdb so.
import type { Reply, Session } from '../session';
import { ProtocolError, parseHexBig } from '../packet';

export function handleZ(s: Session, t: string): Reply {
  const parts = t.slice(1).split(/[,;]/);
  if (parts.length < 3) throw new ProtocolError('Z needs type,addr,kind');
  if (parts[0] !== '0' && parts[0] !== '1') return '';
  const addr = parseHexBig(parts[1]);
  if (parts[0] === '1') {
    if (t[0] === 'Z') s.guest.insertHwBreakpoint(addr);
    else s.guest.removeHwBreakpoint(addr);
  } else if (t[0] === 'Z') s.guest.insertBreakpoint(addr, s.currentVcpu);
  else s.guest.removeBreakpoint(addr);
  return 'OK';
}
