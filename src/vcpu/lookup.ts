// The checks every tool makes before it touches a guest: a valid id, not dom0, a domain
// that exists and is not being destroyed. Nothing is paused or changed.
import { DomainInfo } from '../xg/domctl';
import { Errno, UserError, isXenError } from '../xg/errors';
import { XenControl } from '../xg/xenctl';

/** The guest domain's info, or a UserError saying plainly what is wrong; `dom0` says why dom0 is refused. */
export function lookupGuest(xc: XenControl, domid: number, dom0: string): DomainInfo {
  if (!Number.isInteger(domid) || domid < 0 || domid >= 0x7ff0) throw new UserError(`invalid domain id '${domid}'`);
  if (domid === 0) throw new UserError(dom0);
  let info: DomainInfo;
  try {
    info = xc.getDomainInfo(domid);
  } catch (e) {
    if (isXenError(e, Errno.ESRCH)) throw new UserError(`domain ${domid} does not exist (see \`xl list\`)`);
    throw e;
  }
  if (info.dying) throw new UserError(`domain ${domid} is being destroyed`);
  return info;
}
