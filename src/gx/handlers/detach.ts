// D (detach) and k / vKill: both leave the guest running as it was before we came
// (a debugger must never destroy the guest), then the connection ends.
import type { Reply, Session } from '../session';

export function handleDetach(s: Session): Reply {
  s.guest.detach();
  s.send('OK');
  setImmediate(() => s.close('detached'));
  return null;
}

export function handleKill(s: Session, vKill: boolean): Reply {
  s.guest.detach();
  if (vKill) s.send('OK');
  setImmediate(() => s.close(vKill ? 'vKill: detached (the guest is never destroyed)' : 'k: detached'));
  return null;
}
