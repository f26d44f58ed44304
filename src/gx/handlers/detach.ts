// D (detach) and k / vKill: all leave the guest running as it was before we came
// (a debugger must never destroy the guest), then the connection ends. `k` has no
// reply in the protocol; D and vKill answer OK.
import type { Reply, Session } from '../session';

function endSession(s: Session, reply: string | undefined, why: string): Reply {
  s.guest.detach();
  if (reply) s.send(reply);
  setImmediate(() => s.close(why));
  return null;
}

export function handleDetach(s: Session): Reply {
  return endSession(s, 'OK', 'detached');
}

export function handleKill(s: Session, vKill: boolean): Reply {
  return endSession(s, vKill ? 'OK' : undefined, `${vKill ? 'vKill' : 'k'}: detached (the guest is never destroyed)`);
}
