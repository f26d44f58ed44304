// Packet dispatch: one module per packet family (after the gdbstub crate's split).
// Unknown packets get the empty reply, which gdb reads as "not supported".
import type { Packet, Reply } from '../reply';
import type { HandlerContext } from './context';
import { handleQuery, handleQSet } from './query';
import { handleG, handleBigG, handleP, handleBigP } from './registers';
import { handleM, handleBigM, handleX, handleSmallX } from './memory';
import { handleZ } from './breakpoints';
import { handleVCont, handleLegacyResume, handleStatus } from './resume';
import { handleH, handleThreadAlive } from './threads';
import { handleDetach, handleKill } from './detach';
import { handleLldb } from './lldb';
import { handleExtended } from '../extended';

export function dispatch(s: HandlerContext, p: Packet): Reply | Promise<Reply> {
  const t = p.text;
  const ext = handleExtended(s, p);
  if (ext !== undefined) return ext;
  const lldb = handleLldb(s, t);
  if (lldb !== undefined) return lldb;
  switch (t[0]) {
    case '?': return handleStatus(s);
    case 'q': return handleQuery(s, t);
    case 'Q': return handleQSet(s, t);
    case 'H': return handleH(s, t);
    case 'T': return handleThreadAlive(s, t);
    case 'g': return handleG(s, t);
    case 'G': return handleBigG(s, t);
    case 'p': return handleP(s, t);
    case 'P': return handleBigP(s, t);
    case 'm': return handleM(s, t);
    case 'M': return handleBigM(s, t);
    case 'X': return handleX(s, p.raw);
    case 'x': return handleSmallX(s, t);
    case 'Z':
    case 'z': return handleZ(s, t);
    case 'c':
    case 's':
    case 'C':
    case 'S': return handleLegacyResume(s, t);
    case 'v':
      if (t === 'vMustReplyEmpty') return '';
      if (t.startsWith('vCont')) return handleVCont(s, t);
      if (t.startsWith('vKill')) return handleKill(s, true);
      return '';
    case 'D': return handleDetach(s);
    case 'k': return handleKill(s, false);
    default: return '';
  }
}
