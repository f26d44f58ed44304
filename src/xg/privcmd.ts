// The real hypervisor: hypercalls through the native addon (build/Release/xg.node,
// native/xg/) on /dev/xen/privcmd, and VIRQ_DEBUGGER through /dev/xen/evtchn.
// The addon is thin (syscalls and buffers); naming errors and hinting is done here.
import * as fs from 'fs';
import * as path from 'path';
import createDebug from 'debug';
import { VIRQ_DEBUGGER, XenVer, domctlName } from './domctl';
import { Errno, XenError } from './errors';
import { DomctlData, EventPort, ForeignMapping, Hypercalls } from './hypercalls';

const log = createDebug('gdbsx:privcmd');

/** An open privcmd device (native Privcmd object). */
export interface NativePrivcmd {
  /** The device actually opened, or "<loopback>". */
  readonly path: string;
  /** Where hypercall buffers come from: "hypercall-device", "anonymous", or "" before the first call. */
  readonly bufferKind: string;
  /** __HYPERVISOR_domctl; `data`'s bounce-buffer address is written at `handleOffset` in the op copy. */
  domctl(op: Buffer, data?: Buffer, handleOffset?: number): number;
  xenVersion(cmd: number, arg?: Buffer): number;
  close(): void;
}

/** A bound event channel (native EventChannel object). */
export interface NativeEventChannel {
  readonly port: number;
  /** Stops delivery and unbinds; idempotent. */
  close(): void;
}

export interface NativeAddon {
  open(path?: string): NativePrivcmd;
  bindVirq(virq: number, onEvent: (port: number) => void, path?: string): NativeEventChannel;
  readonly constants: {
    readonly IOCTL_PRIVCMD_HYPERCALL: number;
    readonly IOCTL_EVTCHN_BIND_VIRQ: number;
    readonly IOCTL_EVTCHN_UNBIND: number;
    readonly PRIVCMD_HYPERCALL_SIZE: number;
    readonly DOMCTL_SIZE: number;
    readonly PAGE_SIZE: number;
  };
  /** Test only: a Privcmd whose "hypervisor" is a C++ stand-in (see native/xg/privcmd.cc). */
  _openLoopback(): NativePrivcmd;
  /** Test only: an EventChannel on a socketpair; write 4-byte ports to peerFd to raise events. */
  _testEventChannel(onEvent: (port: number) => void): NativeEventChannel & { readonly peerFd: number };
}

/** A failed system call as thrown by the addon (errno is the positive Linux/Xen value). */
export interface NativeSysError extends Error {
  errno: number;
  syscall: string;
  path?: string;
}

export function isNativeSysError(e: unknown): e is NativeSysError {
  if (!(e instanceof Error)) return false;
  const fields = e as Error & { errno?: unknown; syscall?: unknown };
  return typeof fields.errno === 'number' && typeof fields.syscall === 'string';
}

/** The package root: the nearest directory above this file with a package.json (works from src/ and dist/src/). */
function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) return path.resolve(__dirname, '..', '..');
    dir = up;
  }
}

export const ADDON_PATH = path.join(packageRoot(), 'build', 'Release', 'xg.node');

let addon: NativeAddon | undefined;

function isNativeAddon(m: unknown): m is NativeAddon {
  if (typeof m !== 'object' || m === null) return false;
  const o = m as Record<string, unknown>;
  return typeof o.open === 'function' && typeof o.bindVirq === 'function' && typeof o.constants === 'object';
}

/** Load build/Release/xg.node, or throw a XenError saying how to build it. */
export function loadAddon(): NativeAddon {
  if (addon) return addon;
  if (!fs.existsSync(ADDON_PATH)) {
    throw new XenError(`load ${ADDON_PATH}`, Errno.ENOENT,
      'the native Xen addon is not built: run `npm install` (or `npx node-gyp rebuild`) on the dom0; --sim works without it');
  }
  let m: unknown;
  try {
    m = require(ADDON_PATH);
  } catch (e) {
    throw new XenError(`load ${ADDON_PATH}`, Errno.ENOEXEC,
      `the native Xen addon does not load (${e instanceof Error ? e.message : String(e)}); rebuild it for this Node: npx node-gyp rebuild`);
  }
  if (!isNativeAddon(m)) {
    throw new XenError(`load ${ADDON_PATH}`, Errno.EINVAL, 'this is not the gdbsx xg addon; rebuild it: npx node-gyp rebuild');
  }
  addon = m;
  return m;
}

/** Hints for failing to open the privcmd device. */
function openHint(device: string, errno: number): string {
  switch (errno) {
    case Errno.ENOENT:
      return `no ${device}: this is not a Xen dom0, or the xen-privcmd module / xenfs is not loaded; use --sim to try the simulated Xen`;
    case Errno.EACCES:
    case Errno.EPERM:
      return `permission denied on ${device}: run as root`;
    case Errno.ENODEV:
    case Errno.ENXIO:
      return `${device} exists but has no driver behind it: this is not running under Xen`;
    default:
      return `cannot open ${device}`;
  }
}

/** Hint for the probe hypercall failing on a device that opened. */
function probeHint(device: string, errno: number): string {
  switch (errno) {
    case Errno.ENOTTY:
    case Errno.EINVAL:
      return `${device} is not a Xen privcmd device (it rejects the hypercall ioctl): not running in a Xen dom0?`;
    case Errno.EPERM:
    case Errno.EACCES:
      return `the hypervisor refused a harmless hypercall through ${device}: run as root in dom0 (or the fd is restricted)`;
    case Errno.ENOSYS:
      return `${device} does not pass hypercalls through: not running under Xen?`;
    default:
      return `the hypercall ioctl on ${device} fails`;
  }
}

export interface PrivcmdOpenOptions {
  /** Device to open instead of /dev/xen/privcmd then /proc/xen/privcmd (no fallback). */
  device?: string;
  /** Event-channel device for VIRQ_DEBUGGER (default /dev/xen/evtchn). */
  evtchnDevice?: string;
}

/** Binds a VIRQ to a callback; the addon's bindVirq, replaceable in tests. */
export type VirqBinder = (virq: number, onEvent: (port: number) => void) => NativeEventChannel;

export class PrivcmdHypercalls implements Hypercalls {
  readonly kind = 'xen' as const;
  private readonly dev: NativePrivcmd;
  private readonly bindVirq: VirqBinder;
  private readonly listeners = new Set<() => void>();
  private channel: NativeEventChannel | undefined;
  private closed = false;

  /** Prefer `PrivcmdHypercalls.open()`; this wraps an already open device. */
  constructor(dev: NativePrivcmd, bindVirq: VirqBinder) {
    this.dev = dev;
    this.bindVirq = bindVirq;
  }

  /**
   * Open the privcmd device and check it with a harmless hypercall
   * (XENVER_version), so that "not Xen" fails here with a clear hint.
   */
  static open(options: PrivcmdOpenOptions = {}): PrivcmdHypercalls {
    const xg = loadAddon();
    let dev: NativePrivcmd;
    try {
      dev = xg.open(options.device);
    } catch (e) {
      if (!isNativeSysError(e)) throw e;
      const device = e.path ?? options.device ?? '/dev/xen/privcmd';
      throw new XenError(`open ${device}`, e.errno, openHint(device, e.errno));
    }
    try {
      const v = dev.xenVersion(XenVer.version);
      log('opened %s (Xen %d.%d), hypercall buffers: %s', dev.path, v >>> 16, v & 0xffff, dev.bufferKind);
    } catch (e) {
      dev.close();
      if (!isNativeSysError(e)) throw e;
      throw new XenError(`privcmd hypercall ioctl on ${dev.path}`, e.errno, probeHint(dev.path, e.errno));
    }
    const evtchn = options.evtchnDevice;
    return new PrivcmdHypercalls(dev, (virq, onEvent) => xg.bindVirq(virq, onEvent, evtchn));
  }

  /** The device in use, for messages. */
  get device(): string {
    return this.dev.path;
  }

  domctl(op: Buffer, data?: DomctlData): number {
    try {
      return this.dev.domctl(op, data?.buf, data?.handleOffset);
    } catch (e) {
      if (!isNativeSysError(e)) throw e; // TypeErrors: caller bugs
      const cmd = op.length >= 4 ? op.readUInt32LE(0) : -1;
      throw new XenError(domctlName(cmd), e.errno);
    }
  }

  xenVersion(cmd: number, arg?: Buffer): number {
    try {
      return this.dev.xenVersion(cmd, arg);
    } catch (e) {
      if (!isNativeSysError(e)) throw e;
      throw new XenError(`__HYPERVISOR_xen_version(${cmd})`, e.errno);
    }
  }

  mapForeign(_domid: number, _frames: readonly bigint[], _writable: boolean): ForeignMapping {
    throw new XenError('IOCTL_PRIVCMD_MMAPBATCH_V2', Errno.ENOSYS, 'not implemented yet');
  }

  hvmOp(cmd: number, _arg: Buffer): number {
    throw new XenError(`__HYPERVISOR_hvm_op(${cmd})`, Errno.ENOSYS, 'not implemented yet');
  }

  memoryOp(cmd: number, _arg: Buffer, _data?: DomctlData): number {
    throw new XenError(`__HYPERVISOR_memory_op(${cmd})`, Errno.ENOSYS, 'not implemented yet');
  }

  dmOp(_domid: number, _bufs: Buffer[]): number {
    throw new XenError('IOCTL_PRIVCMD_DM_OP', Errno.ENOSYS, 'not implemented yet');
  }

  bindInterdomain(_domid: number, _remotePort: number, _onEvent: () => void): EventPort {
    throw new XenError('IOCTL_EVTCHN_BIND_INTERDOMAIN', Errno.ENOSYS, 'not implemented yet');
  }

  /**
   * Binds VIRQ_DEBUGGER on the first listener and unbinds after the last one
   * leaves. If binding fails (no /dev/xen/evtchn, or another process such as a
   * second gdbsx owns the VIRQ: EEXIST/EBUSY) it logs and returns a no-op:
   * callers poll anyway, the event only shortens their wait.
   */
  onDebuggerEvent(listener: () => void): () => void {
    if (this.closed) return () => {};
    if (!this.channel) {
      try {
        this.channel = this.bindVirq(VIRQ_DEBUGGER, () => this.dispatch());
        log('bound VIRQ_DEBUGGER to event channel port %d', this.channel.port);
      } catch (e) {
        log('cannot bind VIRQ_DEBUGGER, relying on polling: %s', e instanceof Error ? e.message : String(e));
        return () => {};
      }
    }
    // A wrapper per subscription, so the same function may subscribe twice.
    const entry = (): void => listener();
    this.listeners.add(entry);
    return () => {
      if (!this.listeners.delete(entry)) return;
      if (this.listeners.size === 0) this.unbind();
    };
  }

  private dispatch(): void {
    for (const l of [...this.listeners]) {
      try {
        l();
      } catch (e) {
        log('debugger event listener threw: %s', e instanceof Error ? e.stack ?? e.message : String(e));
      }
    }
  }

  private unbind(): void {
    if (!this.channel) return;
    log('unbinding VIRQ_DEBUGGER (port %d)', this.channel.port);
    this.channel.close();
    this.channel = undefined;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    this.unbind();
    this.dev.close();
  }
}
