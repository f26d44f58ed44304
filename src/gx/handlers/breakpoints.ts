// Z/z: software breakpoints the stub inserts itself (type 0). Hardware breakpoints
// and watchpoints (types 1-4) are not offered yet: the empty reply tells gdb so.
import type { Reply, Session } from '../session';
import { ProtocolError, parseHexBig } from '../packet';

export function handleZ(s: Session, t: string): Reply {
  const parts = t.slice(1).split(/[,;]/);
  if (parts.length < 3) throw new ProtocolError('Z needs type,addr,kind');
  if (parts[0] !== '0') return '';
  const addr = parseHexBig(parts[1]);
  if (t[0] === 'Z') s.guest.insertBreakpoint(addr);
  else s.guest.removeBreakpoint(addr);
  return 'OK';
}
