// The real hypervisor: hypercalls through the native addon (build/Release/xg.node,
// native/xg/) on /dev/xen/privcmd, foreign mappings and dm_op through privcmd's
// own ioctls, and event channels (VIRQ_DEBUGGER, interdomain) through /dev/xen/evtchn.
// The addon is thin (syscalls and buffers); naming errors and hinting is done here.
import * as fs from 'fs';
import * as path from 'path';
import createDebug from 'debug';
import { VIRQ_DEBUGGER, XenVer, domctlName } from './domctl';
import { Errno, XenError, errnoName } from './errors';
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
  /** __HYPERVISOR_hvm_op(cmd, address of the `arg` copy); `arg` at most a page, copied back. */
  hvmOp(cmd: number, arg: Buffer): number;
  /** __HYPERVISOR_event_channel_op(cmd, address of the `arg` copy); absent in addons built before it. */
  eventChannelOp?(cmd: number, arg: Buffer): number;
  /** __HYPERVISOR_memory_op(cmd, address of the `arg` copy); `data`'s copy address goes at `handleOffset` in it. */
  memoryOp(cmd: number, arg: Buffer, data?: Buffer, handleOffset?: number): number;
  /** IOCTL_PRIVCMD_DM_OP on `domid`: 1..16 buffers of at most 4096 bytes, in/out. */
  dmOp(domid: number, bufs: Buffer[]): number;
  /** mmap + one IOCTL_PRIVCMD_MMAPBATCH_V2 over `frames`. */
  mapForeign(domid: number, frames: BigUint64Array, writable: boolean): NativeForeignMapping;
  close(): void;
}

/** Foreign frames mapped by the addon (native ForeignMapping object). */
export interface NativeForeignMapping {
  readonly frames: number;
  readonly writable: boolean;
  /** Per frame: 0 or the positive errno. A new array on each access. */
  readonly errors: number[];
  readonly mapped: boolean;
  read(offset: number, into: Buffer): void;
  write(offset: number, from: Buffer): void;
  unmap(): void;
}

/** A bound event channel (native EventChannel object). */
export interface NativeEventChannel {
  /** The local port. */
  readonly port: number;
  /** IOCTL_EVTCHN_NOTIFY on the port. */
  notify(): void;
  /** Stops delivery and unbinds; idempotent. */
  close(): void;
}

/** The test double's channel: a socketpair end, and the port ioctls it recorded instead of issuing. */
export interface NativeTestEventChannel extends NativeEventChannel {
  readonly peerFd: number;
  readonly _ioctls: { readonly request: number; readonly port: number }[];
}

export interface NativeAddon {
  open(path?: string): NativePrivcmd;
  bindVirq(virq: number, onEvent: (port: number) => void, path?: string): NativeEventChannel;
  bindInterdomain(domid: number, remotePort: number, onEvent: (port: number) => void, path?: string): NativeEventChannel;
  readonly constants: {
    readonly IOCTL_PRIVCMD_HYPERCALL: number;
    readonly IOCTL_PRIVCMD_MMAPBATCH_V2: number;
    readonly IOCTL_PRIVCMD_DM_OP: number;
    readonly IOCTL_EVTCHN_BIND_VIRQ: number;
    readonly IOCTL_EVTCHN_BIND_INTERDOMAIN: number;
    readonly IOCTL_EVTCHN_UNBIND: number;
    readonly IOCTL_EVTCHN_NOTIFY: number;
    readonly PRIVCMD_HYPERCALL_SIZE: number;
    readonly DOMCTL_SIZE: number;
    readonly PAGE_SIZE: number;
    readonly XEN_PAGE_SIZE: number;
    readonly DM_OP_MAX_BUFS: number;
    readonly DM_OP_MAX_BUF_SIZE: number;
    /** Loopback guest: frames below this map memory whose 8-byte word at address a holds a. */
    readonly LOOPBACK_GUEST_FRAMES: number;
    /** Loopback guest: frame LOOPBACK_ERROR_FRAMES + E fails with errno E. */
    readonly LOOPBACK_ERROR_FRAMES: number;
  };
  /** Test only: a Privcmd whose "hypervisor" is a C++ stand-in (see native/xg/privcmd.cc). */
  _openLoopback(): NativePrivcmd;
  /** Test only: an EventChannel on a socketpair; write 4-byte ports to peerFd to raise events. */
  _testEventChannel(onEvent: (port: number) => void, port?: number): NativeTestEventChannel;
}

/** A failed system call as thrown by the addon (errno is the positive Linux/Xen value). */
export interface NativeSysError extends Error {
  errno: number;
  syscall: string;
  path?: string;
  /** Foreign-mapping access over a frame Xen refused: its index and errno. */
  frame?: number;
  frameErrno?: number;
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
  if (typeof m.bindInterdomain !== 'function') {
    throw new XenError(`load ${ADDON_PATH}`, Errno.EINVAL,
      'the native Xen addon predates foreign mappings and interdomain event channels; rebuild it: npx node-gyp rebuild');
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

/** Binds an interdomain event channel; the addon's bindInterdomain, replaceable in tests. */
export type InterdomainBinder = (domid: number, remotePort: number, onEvent: (port: number) => void) => NativeEventChannel;

/** The members EventPort is meant to have (see bindInterdomain). */
type BoundEventPort = Pick<EventPort, 'localPort' | 'notify' | 'close'>;

const MAX_FRAME = (1n << 64n) - 1n;

function hex(n: bigint | number): string {
  return `0x${n.toString(16)}`;
}

/** A mapping made by the addon, with its errors turned into XenErrors naming the domain and frame. */
class PrivcmdForeignMapping implements ForeignMapping {
  readonly frames: number;
  readonly writable: boolean;
  readonly errors: readonly number[];

  constructor(
    private readonly native: NativeForeignMapping,
    private readonly domid: number,
    private readonly frameNumbers: readonly bigint[],
  ) {
    this.frames = native.frames;
    this.writable = native.writable;
    this.errors = Object.freeze(native.errors);
  }

  read(offset: number, into: Buffer): void {
    try {
      this.native.read(offset, into);
    } catch (e) {
      throw this.named(e, 'read', offset, into.length);
    }
  }

  write(offset: number, from: Buffer): void {
    try {
      this.native.write(offset, from);
    } catch (e) {
      throw this.named(e, 'write', offset, from.length);
    }
  }

  unmap(): void {
    this.native.unmap();
  }

  /** XenError for the addon's errno errors; TypeError/RangeError (caller bugs) unchanged. */
  private named(e: unknown, what: 'read' | 'write', offset: number, length: number): unknown {
    if (!isNativeSysError(e)) return e;
    const where = `${what} of ${length} bytes at offset ${hex(offset)} of dom${this.domid}'s mapping`;
    if (e.frame !== undefined) {
      const frame = this.frameNumbers[e.frame];
      const why = e.frameErrno !== undefined ? errnoName(e.frameErrno) : 'an error';
      return new XenError(`${where} (frame ${hex(frame ?? 0n)}, index ${e.frame})`, e.errno,
        `Xen refused to map that frame (${why})`);
    }
    if (e.errno === Errno.EACCES) return new XenError(where, e.errno, 'the mapping is read-only');
    if (!this.native.mapped) return new XenError(where, e.errno, 'the mapping was unmapped');
    return new XenError(where, e.errno);
  }
}

export class PrivcmdHypercalls implements Hypercalls {
  readonly kind = 'xen' as const;
  private readonly dev: NativePrivcmd;
  private readonly bindVirq: VirqBinder;
  private readonly bindInterdomainPort: InterdomainBinder;
  private readonly listeners = new Set<() => void>();
  private readonly ports = new Set<NativeEventChannel>();
  private channel: NativeEventChannel | undefined;
  private closed = false;

  /**
   * Prefer `PrivcmdHypercalls.open()`; this wraps an already open device. Without
   * `bindInterdomain`, the addon's binds on /dev/xen/evtchn.
   */
  constructor(dev: NativePrivcmd, bindVirq: VirqBinder, bindInterdomain?: InterdomainBinder) {
    this.dev = dev;
    this.bindVirq = bindVirq;
    this.bindInterdomainPort = bindInterdomain ?? ((domid, port, onEvent) => loadAddon().bindInterdomain(domid, port, onEvent));
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
    return new PrivcmdHypercalls(dev, (virq, onEvent) => xg.bindVirq(virq, onEvent, evtchn),
      (domid, port, onEvent) => xg.bindInterdomain(domid, port, onEvent, evtchn));
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

  /**
   * One mmap of privcmd plus one IOCTL_PRIVCMD_MMAPBATCH_V2. Frames Xen refuses
   * (holes, paged out, typed PV pages asked writable) show in `errors`; touching
   * them through read/write is an EFAULT XenError naming the frame.
   */
  mapForeign(domid: number, frames: readonly bigint[], writable: boolean): ForeignMapping {
    for (const f of frames) {
      if (typeof f !== 'bigint' || f < 0n || f > MAX_FRAME) throw new TypeError(`mapForeign: frame ${String(f)} is not a 64-bit frame number`);
    }
    let native: NativeForeignMapping;
    try {
      native = this.dev.mapForeign(domid, BigUint64Array.from(frames), writable);
    } catch (e) {
      if (!isNativeSysError(e)) throw e;
      const what = e.syscall === 'mmap' ? `mmap of ${this.dev.path}` : 'IOCTL_PRIVCMD_MMAPBATCH_V2';
      throw new XenError(`${what} (dom${domid}, ${frames.length} frames)`, e.errno, mapHint(e.errno));
    }
    const mapping = new PrivcmdForeignMapping(native, domid, [...frames]);
    const failed = mapping.errors.filter((err) => err !== 0).length;
    if (failed) log('dom%d: %d of %d frames not mapped', domid, failed, frames.length);
    return mapping;
  }

  hvmOp(cmd: number, arg: Buffer): number {
    try {
      return this.dev.hvmOp(cmd, arg);
    } catch (e) {
      if (!isNativeSysError(e)) throw e;
      throw new XenError(`__HYPERVISOR_hvm_op(${cmd})`, e.errno);
    }
  }

  eventChannelOp(cmd: number, arg: Buffer): number {
    if (!this.dev.eventChannelOp) {
      throw new XenError(`__HYPERVISOR_event_channel_op(${cmd})`, Errno.ENOSYS, 'the native addon predates this call: rebuild it (npm install, or npx node-gyp rebuild)');
    }
    try {
      return this.dev.eventChannelOp(cmd, arg);
    } catch (e) {
      if (!isNativeSysError(e)) throw e;
      throw new XenError(`__HYPERVISOR_event_channel_op(${cmd})`, e.errno);
    }
  }

  memoryOp(cmd: number, arg: Buffer, data?: DomctlData): number {
    try {
      return this.dev.memoryOp(cmd, arg, data?.buf, data?.handleOffset);
    } catch (e) {
      if (!isNativeSysError(e)) throw e;
      throw new XenError(`__HYPERVISOR_memory_op(${cmd})`, e.errno);
    }
  }

  dmOp(domid: number, bufs: Buffer[]): number {
    try {
      return this.dev.dmOp(domid, bufs);
    } catch (e) {
      if (!isNativeSysError(e)) throw e;
      const op = bufs[0] && bufs[0].length >= 4 ? String(bufs[0].readUInt32LE(0)) : '?';
      // Refused before the ioctl (privcmd's limits): the addon's message says why.
      const hint = e.path === undefined ? e.message : '';
      throw new XenError(`__HYPERVISOR_dm_op(${op}) on dom${domid}`, e.errno, hint);
    }
  }

  /**
   * Binds on its own /dev/xen/evtchn fd; `onEvent` runs on the event loop (a
   * throwing callback is logged, not fatal). close() of this backend closes it too.
   */
  bindInterdomain(domid: number, remotePort: number, onEvent: () => void): EventPort {
    if (this.closed) throw new Error('privcmd: the device is closed');
    let ch: NativeEventChannel;
    try {
      ch = this.bindInterdomainPort(domid, remotePort, () => {
        try {
          onEvent();
        } catch (e) {
          log('event port listener threw: %s', e instanceof Error ? e.stack ?? e.message : String(e));
        }
      });
    } catch (e) {
      if (!isNativeSysError(e)) throw e;
      throw new XenError(`IOCTL_EVTCHN_BIND_INTERDOMAIN (dom${domid} port ${remotePort})`, e.errno, bindHint(e));
    }
    this.ports.add(ch);
    log('bound dom%d port %d to local port %d', domid, remotePort, ch.port);
    const ports = this.ports;
    const port: BoundEventPort = {
      localPort: ch.port,
      notify(): void {
        try {
          ch.notify();
        } catch (e) {
          if (!isNativeSysError(e)) throw e;
          throw new XenError(`IOCTL_EVTCHN_NOTIFY (local port ${ch.port})`, e.errno);
        }
      },
      close(): void {
        ports.delete(ch);
        ch.close();
      },
    };
    return port;
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
    for (const ch of this.ports) ch.close();
    this.ports.clear();
    this.dev.close();
  }
}

/** Hints for a foreign mapping that could not be made at all. */
function mapHint(errno: number): string {
  switch (errno) {
    case Errno.ESRCH:
      return 'no such domain';
    case Errno.EPERM:
    case Errno.EACCES:
      return 'not allowed: run as root in dom0 (a restricted privcmd fd cannot map)';
    case Errno.ENOMEM:
      return 'out of memory (or address space) for the mapping';
    case Errno.EINVAL:
      return 'the privcmd driver rejected the batch';
    default:
      return '';
  }
}

/** Hints for failing to bind an interdomain event channel. */
function bindHint(e: NativeSysError): string {
  if (e.syscall === 'open' && e.errno === Errno.ENOENT) {
    return `no ${e.path ?? '/dev/xen/evtchn'}: load the xen-evtchn module (or this is not a Xen dom0)`;
  }
  if (e.errno === Errno.EINVAL) return 'no such remote port, or it is not waiting for an interdomain bind';
  if (e.errno === Errno.ESRCH) return 'no such domain';
  return e.syscall === 'open' ? `cannot open ${e.path ?? '/dev/xen/evtchn'}` : '';
}
