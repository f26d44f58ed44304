// D (detach) and k / vKill: all leave the guest running as it was before we came
// (a debugger must never destroy the guest), then the connection ends. D and vKill
// answer OK. `k` has no reply in gdb's protocol (gdb does not wait for one; it sends
// vKill anyway when the stub offers multiprocess), but LLDB's `process kill` waits
// for an exit stop reply and reports a failure without one: `W00`, the session's end.
import type { Reply } from '../reply';
import type { HandlerContext } from './context';
import { hexByte } from '../packet';

function endSession(s: HandlerContext, reply: string | undefined, why: string): Reply {
  s.guest.detach();
  if (reply) s.send(reply);
  setImmediate(() => s.close(why));
  return null;
}

export function handleDetach(s: HandlerContext): Reply {
  return endSession(s, 'OK', 'detached');
}

export function handleKill(s: HandlerContext, vKill: boolean): Reply {
  const exited = `W${hexByte(0)}${s.multiprocess ? `;process:${s.guest.domid.toString(16)}` : ''}`;
  return endSession(s, vKill ? 'OK' : exited, `${vKill ? 'vKill' : 'k'}: detached (the guest is never destroyed)`);
}
