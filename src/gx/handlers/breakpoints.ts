// Z/z: software breakpoints the stub inserts itself (type 0), hardware instruction
// breakpoints (type 1) and watchpoints (types 2 write, 3 read, 4 access) in the debug
// registers, where the target can trap them; where it cannot, an error with the reason
// (an empty reply would make gdb write the int3 itself, or say watchpoints do not exist).
import type { Reply } from '../reply';
import type { HandlerContext } from './context';
import type { WatchKind } from '../../vcpu/guest';
import { ProtocolError, parseHexBig, parseHexInt } from '../packet';

const WATCH: Record<string, WatchKind> = { 2: 'watch', 3: 'rwatch', 4: 'awatch' };

export function handleZ(s: HandlerContext, t: string): Reply {
  const parts = t.slice(1).split(/[,;]/);
  if (parts.length < 3) throw new ProtocolError('Z needs type,addr,kind');
  const insert = t[0] === 'Z';
  const addr = parseHexBig(parts[1]);
  switch (parts[0]) {
    case '0':
      if (insert) s.guest.insertBreakpoint(addr, s.currentVcpu);
      else s.guest.removeBreakpoint(addr);
      return 'OK';
    case '1':
      if (insert) s.guest.insertHwBreakpoint(addr);
      else s.guest.removeHwBreakpoint(addr);
      return 'OK';
    case '2':
    case '3':
    case '4': {
      // kind is the length in bytes.
      const len = parseHexInt(parts[2]);
      if (insert) s.guest.insertWatchpoint(WATCH[parts[0]], addr, len);
      else s.guest.removeWatchpoint(WATCH[parts[0]], addr, len);
      return 'OK';
    }
    default:
      return '';
  }
}
