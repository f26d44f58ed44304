// Errors from the hypervisor, named by the hypercall that failed, with the errno
// and what the user can do about it.

/** Xen's errno values (xen/include/public/errno.h); equal to Linux x86 ones. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  ENOEXEC: 8,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  ENOSPC: 28,
  EINVAL: 22,
  ENOTTY: 25,
  ENOSYS: 38,
  ENODATA: 61,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
} as const;

const errnoNames = new Map<number, string>(Object.entries(Errno).map(([k, v]) => [v, k]));

export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

/** A hypercall (or the device behind it) refused. `op` names the call, e.g. "XEN_DOMCTL_pausedomain". */
export class XenError extends Error {
  readonly op: string;
  readonly errno: number;
  readonly hint: string;

  constructor(op: string, errno: number, hint = '') {
    super(`${op} failed: ${errnoName(errno)}${hint ? `: ${hint}` : ''}`);
    this.name = 'XenError';
    this.op = op;
    this.errno = errno;
    this.hint = hint;
  }
}

export function isXenError(e: unknown, errno?: number): e is XenError {
  return e instanceof XenError && (errno === undefined || e.errno === errno);
}

/** A user-facing failure: one clear sentence, no stack trace needed. */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}
