// Which Xen release the simulated hypervisor claims to be (XENVER_version and
// XENVER_extraversion), the domctl interface version that release accepts, and the
// release-specific bugs it reproduces.

export interface SimRelease {
  major: number;
  minor: number;
  /** XENVER_extraversion, e.g. ".1" for 4.21.1. */
  extra: string;
}

/** "4.21.1" -> 4, 21, ".1"; anything after the minor number is the extraversion. */
export function parseRelease(s: string): SimRelease {
  const m = /^(\d+)\.(\d+)(.*)$/.exec(s);
  if (!m) throw new Error(`release "${s}": expected major.minor[.patch][suffix], e.g. 4.21.1`);
  return { major: Number(m[1]), minor: Number(m[2]), extra: m[3] };
}

/** XEN_DOMCTL_INTERFACE_VERSION of a release (0x15 4.17, 0x16 4.18, 0x17 4.19-4.21, 0x18 4.22). */
export function interfaceVersionOf(r: SimRelease): number {
  if (r.major !== 4 || r.minor < 17) throw new Error(`Xen ${r.major}.${r.minor}: the simulation knows 4.17 to 4.22`);
  if (r.minor === 17) return 0x15;
  if (r.minor === 18) return 0x16;
  if (r.minor <= 21) return 0x17;
  return 0x18;
}

/**
 * Xen 4.21.0 and 4.21.1 lose r8-r15 in get/setvcpucontext (9f892f84c2 "Stop using
 * XLAT_cpu_user_regs()"; fixed in 4.21.2 by d5ad2233bb and in 4.22.0).
 */
export function dropsHighGprs(r: SimRelease): boolean {
  const patch = /^\.(\d+)/.exec(r.extra);
  return r.major === 4 && r.minor === 21 && patch !== null && Number(patch[1]) <= 1;
}
