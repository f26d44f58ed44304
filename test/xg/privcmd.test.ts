// Tests of the native addon (build/Release/xg.node) and PrivcmdHypercalls.
// Without Xen, the hypercall path is exercised through the addon's loopback
// stand-in (which dereferences the addresses as Xen would) and event delivery
// through a socketpair; only the block at the end needs a real dom0.
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DOMCTL_SIZE, DomctlCmd, Off, VIRQ_DEBUGGER, newDomctl } from '../../src/xg/domctl';
import { Errno, XenError } from '../../src/xg/errors';
import {
  ADDON_PATH, NativeAddon, NativeEventChannel, PrivcmdHypercalls, isNativeSysError, loadAddon,
} from '../../src/xg/privcmd';
import { XenControl } from '../../src/xg/xenctl';

const PRIVCMD_MODULE = path.resolve(__dirname, '../../src/xg/privcmd.js');
const isDom0 = fs.existsSync('/dev/xen/privcmd') || fs.existsSync('/proc/xen/privcmd');

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(cond: () => boolean, what: string, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function portBytes(...ports: number[]): Buffer {
  const b = Buffer.alloc(4 * ports.length);
  ports.forEach((p, i) => b.writeUInt32LE(p, 4 * i));
  return b;
}

/**
 * Read `fd` to its end; returns the byte count. A socket closed with unread
 * data in it ends with ECONNRESET instead of EOF: same meaning here.
 */
function drain(fd: number): number {
  const buf = Buffer.alloc(64);
  let total = 0;
  for (;;) {
    let n: number;
    try {
      n = fs.readSync(fd, buf);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ECONNRESET') return total;
      throw e;
    }
    if (n === 0) return total;
    total += n;
  }
}

/** The /proc/self/smaps entry (header + fields) of the mapping containing `addr`. */
function smapsEntry(addr: number): string {
  const a = BigInt(addr);
  const lines = fs.readFileSync('/proc/self/smaps', 'latin1').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(lines[i]);
    if (!m || a < BigInt('0x' + m[1]) || a >= BigInt('0x' + m[2])) continue;
    const out = [lines[i]];
    for (let j = i + 1; j < lines.length && !/^[0-9a-f]+-[0-9a-f]+ /.test(lines[j]); j++) out.push(lines[j]);
    return out.join('\n');
  }
  throw new Error(`no mapping contains 0x${addr.toString(16)}`);
}

/** A gdbsx_guestmemio read request as xenctl.ts builds it. */
function memioRead(gva: bigint, len: number, faultAfter = 0n): Buffer {
  const op = newDomctl(DomctlCmd.gdbsx_guestmemio, 0x15, 1);
  op.writeBigUInt64LE(faultAfter, Off.memPgd3val); // loopback: "fault after N bytes"
  op.writeBigUInt64LE(gva, Off.memGva);
  op.writeUInt32LE(len, Off.memLen);
  op.writeUInt32LE(0xdeadbeef, Off.memRemain);
  return op;
}

describe('xg native addon', () => {
  let xg: NativeAddon;

  before(() => {
    xg = loadAddon();
  });

  it('loads from build/Release relative to the package root', () => {
    assert.ok(ADDON_PATH.endsWith(path.join('build', 'Release', 'xg.node')));
    assert.ok(fs.existsSync(ADDON_PATH));
    assert.equal(typeof xg.open, 'function');
  });

  it('is built with the Linux ABI numbers', () => {
    assert.equal(xg.constants.IOCTL_PRIVCMD_HYPERCALL, 0x305000);
    assert.equal(xg.constants.IOCTL_EVTCHN_BIND_VIRQ, 0x44500);
    assert.equal(xg.constants.IOCTL_EVTCHN_UNBIND, 0x44503);
    assert.equal(xg.constants.PRIVCMD_HYPERCALL_SIZE, 48);
    assert.equal(xg.constants.DOMCTL_SIZE, DOMCTL_SIZE);
  });

  it('reports open failures with errno, syscall and path', () => {
    const missing = path.join(os.tmpdir(), `no-such-privcmd-${process.pid}`);
    assert.throws(() => xg.open(missing), (e: unknown) => {
      assert.ok(isNativeSysError(e));
      assert.equal(e.errno, Errno.ENOENT);
      assert.equal(e.syscall, 'open');
      assert.equal(e.path, missing);
      assert.match(e.message, /No such file/);
      return true;
    });
  });

  describe('argument validation (TypeError, never a crash)', () => {
    let dev: ReturnType<NativeAddon['open']>;
    before(() => {
      dev = xg._openLoopback();
    });
    after(() => dev.close());

    const op = () => newDomctl(DomctlCmd.getdomaininfo, 0x15, 0);
    const cases: [string, () => unknown][] = [
      ['op missing', () => Reflect.apply(dev.domctl, dev, [])],
      ['op not a Buffer', () => Reflect.apply(dev.domctl, dev, ['x'.repeat(144)])],
      ['op too short', () => dev.domctl(Buffer.alloc(143))],
      ['op too long', () => dev.domctl(Buffer.alloc(145))],
      ['data without handleOffset', () => dev.domctl(op(), Buffer.alloc(8))],
      ['handleOffset without data', () => dev.domctl(op(), undefined, 24)],
      ['handleOffset in the header', () => dev.domctl(op(), Buffer.alloc(8), 8)],
      ['handleOffset past the end', () => dev.domctl(op(), Buffer.alloc(8), 140)],
      ['handleOffset beyond the struct', () => dev.domctl(op(), Buffer.alloc(8), 144)],
      ['handleOffset negative', () => dev.domctl(op(), Buffer.alloc(8), -8)],
      ['handleOffset misaligned', () => dev.domctl(op(), Buffer.alloc(8), 28)],
      ['handleOffset fractional', () => dev.domctl(op(), Buffer.alloc(8), 24.5)],
      ['handleOffset NaN', () => dev.domctl(op(), Buffer.alloc(8), NaN)],
      ['handleOffset a string', () => Reflect.apply(dev.domctl, dev, [op(), Buffer.alloc(8), '24'])],
      ['data not a Buffer', () => Reflect.apply(dev.domctl, dev, [op(), [1, 2, 3], 24])],
      ['memio without data', () => dev.domctl(memioRead(0n, 8))],
      ['memio len larger than data', () => dev.domctl(memioRead(0n, 4097), Buffer.alloc(4096), Off.memUva)],
      ['memio data at another offset', () => dev.domctl(memioRead(0n, 8), Buffer.alloc(8), Off.ctxHandle)],
      ['xenVersion cmd negative', () => dev.xenVersion(-1)],
      ['xenVersion cmd not a number', () => Reflect.apply(dev.xenVersion, dev, ['0'])],
      ['xenVersion arg not a Buffer', () => Reflect.apply(dev.xenVersion, dev, [0, 'abc'])],
      ['open path not a string', () => Reflect.apply(xg.open, xg, [42])],
      ['bindVirq without a callback', () => Reflect.apply(xg.bindVirq, xg, [VIRQ_DEBUGGER])],
      ['bindVirq virq out of range', () => xg.bindVirq(64, () => {})],
    ];
    for (const [name, call] of cases) {
      it(name, () => assert.throws(call, TypeError));
    }

    it('the largest valid handleOffset is accepted', () => {
      assert.equal(dev.domctl(op(), Buffer.alloc(8), 136), 0);
    });

    it('PrivcmdHypercalls lets TypeErrors through unchanged', () => {
      const hc = new PrivcmdHypercalls(xg._openLoopback(), () => assert.fail('no bind'));
      try {
        assert.throws(() => hc.domctl(Buffer.alloc(10)), TypeError);
        assert.throws(() => hc.domctl(op(), { buf: Buffer.alloc(4), handleOffset: 140 }), TypeError);
      } finally {
        hc.close();
      }
    });

    it('calls after close() throw instead of touching a closed fd', () => {
      const d = xg._openLoopback();
      d.close();
      d.close();
      assert.throws(() => d.domctl(op()), /closed/);
      assert.throws(() => d.xenVersion(0), /closed/);
    });
  });

  describe('hypercall buffers (loopback hypervisor)', () => {
    let dev: ReturnType<NativeAddon['open']>;
    beforeEach(() => {
      dev = xg._openLoopback();
    });
    afterEach(() => dev.close());

    it('passes the data buffer address at handleOffset and copies data and op back', () => {
      const op = memioRead(0x1000n, 300);
      const data = Buffer.alloc(300, 0xee);
      const addr = dev.domctl(op, data, Off.memUva);
      assert.ok(addr > 0);
      for (let i = 0; i < data.length; i++) assert.equal(data[i], (0x1000 + i) & 0xff, `byte ${i}`);
      assert.equal(op.readUInt32LE(Off.memRemain), 0, 'op copied back');
      assert.equal(op.readBigUInt64LE(Off.memUva), 0n, "the caller's handle bytes are kept");
      assert.equal(op.readUInt32LE(Off.memLen), 300);
    });

    it('uses locked, fork-excluded memory and reuses it between calls', () => {
      const a1 = dev.domctl(memioRead(0n, 16), Buffer.alloc(16), Off.memUva);
      const a2 = dev.domctl(memioRead(0n, 4096), Buffer.alloc(4096), Off.memUva);
      assert.equal(a1, a2, 'the cached buffer is reused');
      assert.equal(dev.bufferKind, 'anonymous');
      assert.equal(a1 % xg.constants.PAGE_SIZE, 0, 'data starts on a page');
      const entry = smapsEntry(a1);
      const flags = (/^VmFlags:(.*)$/m.exec(entry)?.[1] ?? '').trim().split(/\s+/);
      assert.ok(flags.includes('lo'), `mapping not locked (MAP_LOCKED): ${entry}`);
      assert.ok(flags.includes('dc'), `mapping not excluded from fork (MADV_DONTFORK): ${entry}`);
      assert.match(entry, /^Locked:\s+[1-9]\d* kB$/m, 'pages resident and locked');
    });

    it('grows for bulk memory reads of several MiB', () => {
      const len = 3 * 1024 * 1024 + 123;
      const data = Buffer.alloc(len);
      const addr = dev.domctl(memioRead(0xffff800000000005n, len), data, Off.memUva);
      assert.equal(data[0], 5);
      assert.equal(data[len - 1], (5 + len - 1) & 0xff);
      assert.equal(data[1 << 20], (5 + (1 << 20)) & 0xff);
      const entry = smapsEntry(addr);
      const size = Number(/^Size:\s+(\d+) kB$/m.exec(entry)?.[1] ?? 0) * 1024;
      assert.ok(size >= len + xg.constants.PAGE_SIZE, `mapping of ${size} bytes holds op page + ${len}`);
    });

    it('copies the data back even when the hypercall fails (EFAULT after a prefix)', () => {
      const op = memioRead(0x40n, 64, 10n);
      const data = Buffer.alloc(64, 0xee);
      assert.throws(() => dev.domctl(op, data, Off.memUva), (e: unknown) => isNativeSysError(e) && e.errno === Errno.EFAULT);
      for (let i = 0; i < 10; i++) assert.equal(data[i], 0x40 + i);
      assert.ok(data.subarray(10).every((b) => b === 0xee), 'the rest untouched');
      assert.equal(op.readUInt32LE(Off.memRemain), 0xdeadbeef, 'op unchanged, as Xen leaves it on failure');
    });

    it('xenVersion passes cmd and a buffer and copies the buffer back', () => {
      assert.equal(dev.xenVersion(0), (4 << 16) | 19);
      const extra = Buffer.alloc(16, 0xee);
      assert.equal(dev.xenVersion(1, extra), (4 << 16) | 19);
      assert.equal(extra.subarray(0, extra.indexOf(0)).toString(), '-loopback');
    });
  });

  describe('event channels (socketpair in place of /dev/xen/evtchn)', () => {
    it('delivers each port to the callback and unmasks it by writing it back', async () => {
      const seen: number[] = [];
      const ch = xg._testEventChannel((port) => seen.push(port));
      try {
        fs.writeSync(ch.peerFd, portBytes(7));
        await waitFor(() => seen.length === 1, 'first event');
        fs.writeSync(ch.peerFd, portBytes(7, 9, 11));
        await waitFor(() => seen.length === 4, 'three more events');
        assert.deepEqual(seen, [7, 7, 9, 11]);
        const echo = Buffer.alloc(16);
        for (let got = 0; got < echo.length;) got += fs.readSync(ch.peerFd, echo, got, echo.length - got, null);
        assert.deepEqual(echo, portBytes(7, 7, 9, 11), 'every port written back (unmask)');
      } finally {
        ch.close();
        fs.closeSync(ch.peerFd);
      }
    });

    it('close() stops delivery at once and closes the channel fd; it is idempotent', async () => {
      let calls = 0;
      const ch = xg._testEventChannel(() => calls++);
      try {
        fs.writeSync(ch.peerFd, portBytes(3));
        ch.close(); // whatever the thread queued is dropped
        ch.close();
        await sleep(50);
        assert.equal(calls, 0);
        // The watcher may or may not have echoed port 3 before close; then EOF.
        const total = drain(ch.peerFd);
        assert.ok(total === 0 || total === 4, `${total} bytes`);
      } finally {
        fs.closeSync(ch.peerFd);
      }
    });

    it('neither an open nor a closed channel keeps the process alive, in the main thread or a worker', function () {
      this.timeout(20000);
      const script = (close: boolean) => `
        const xg = require(${JSON.stringify(ADDON_PATH)});
        const fs = require('fs');
        const ch = xg._testEventChannel((port) => {
          console.log('event ' + port);
          ${close ? 'ch.close();' : ''}
        });
        const b = Buffer.alloc(4); b.writeUInt32LE(5);
        fs.writeSync(ch.peerFd, b);
        setTimeout(() => {}, 100);`;
      const worker = `
        const { Worker } = require('worker_threads');
        const w = new Worker(${JSON.stringify(script(false))}, { eval: true });
        w.on('exit', (code) => console.log('worker exit ' + code));`;
      for (const [name, src, expect] of [
        ['closed', script(true), 'event 5'],
        ['left open', script(false), 'event 5'],
        ['left open in a worker', worker, 'event 5\nworker exit 0'],
      ] as const) {
        const r = spawnSync(process.execPath, ['-e', src], { encoding: 'utf8', timeout: 5000 });
        assert.equal(r.error, undefined, `${name}: ${r.error?.message ?? ''} (did not exit?)`);
        assert.equal(r.status, 0, `${name}: exit ${r.status} signal ${r.signal} ${r.stderr}`);
        assert.equal(r.stdout.trim(), expect, name);
      }
    });

    it('binding VIRQ_DEBUGGER without /dev/xen/evtchn fails with errno and path', function () {
      if (fs.existsSync('/dev/xen/evtchn')) this.skip();
      assert.throws(() => xg.bindVirq(VIRQ_DEBUGGER, () => {}), (e: unknown) => {
        assert.ok(isNativeSysError(e));
        assert.equal(e.errno, Errno.ENOENT);
        assert.equal(e.path, '/dev/xen/evtchn');
        return true;
      });
    });

    it('bindVirq on a device that is not evtchn fails in the ioctl, not later', () => {
      assert.throws(() => xg.bindVirq(VIRQ_DEBUGGER, () => {}, '/dev/null'), (e: unknown) =>
        isNativeSysError(e) && e.syscall === 'ioctl' && e.errno === Errno.ENOTTY);
    });
  });
});

describe('PrivcmdHypercalls', () => {
  describe('open() on a machine without Xen', function () {
    before(function () {
      if (isDom0) {
        console.log('      (skipped: this machine has /dev/xen/privcmd; see the dom0 tests below)');
        this.skip();
      }
    });

    it('names the missing device and says what to do', () => {
      assert.throws(() => PrivcmdHypercalls.open(), (e: unknown) => {
        assert.ok(e instanceof XenError);
        assert.equal(e.errno, Errno.ENOENT);
        assert.match(e.message, /\/dev\/xen\/privcmd/);
        assert.match(e.message, /not a Xen dom0/);
        assert.match(e.message, /xen-privcmd/);
        assert.match(e.message, /--sim/);
        return true;
      });
    });
  });

  it('without a built addon, says how to build it', function () {
    this.timeout(10000);
    // A copy of the compiled module in a package that has no build/ directory.
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'xg-nobuild-'));
    try {
      const dir = path.join(root, 'dist', 'src', 'xg');
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(root, 'package.json'), '{}');
      for (const f of ['privcmd.js', 'domctl.js', 'errors.js']) {
        fs.copyFileSync(path.join(path.dirname(PRIVCMD_MODULE), f), path.join(dir, f));
      }
      const probe = `
        const { PrivcmdHypercalls } = require(${JSON.stringify(path.join(dir, 'privcmd.js'))});
        try { PrivcmdHypercalls.open(); console.log('opened'); }
        catch (e) { console.log(JSON.stringify({ name: e.name, message: e.message })); }`;
      const modules = path.resolve(__dirname, '../../../node_modules');
      const r = spawnSync(process.execPath, ['-e', probe], { encoding: 'utf8', env: { ...process.env, NODE_PATH: modules } });
      assert.equal(r.status, 0, r.stderr);
      const { name, message } = JSON.parse(r.stdout) as { name: string; message: string };
      assert.equal(name, 'XenError');
      assert.ok(message.includes(path.join(root, 'build', 'Release', 'xg.node')), message);
      assert.match(message, /not built: run `npm install` \(or `npx node-gyp rebuild`\)/);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('an explicit device path that does not exist is named as such', () => {
    const missing = path.join(os.tmpdir(), `no-such-privcmd-${process.pid}`);
    assert.throws(() => PrivcmdHypercalls.open({ device: missing }), (e: unknown) =>
      e instanceof XenError && e.errno === Errno.ENOENT && e.message.includes(`no ${missing}`));
  });

  it('a device without the hypercall ioctl (/dev/null) is "not a Xen privcmd device"', () => {
    assert.throws(() => PrivcmdHypercalls.open({ device: '/dev/null' }), (e: unknown) => {
      assert.ok(e instanceof XenError);
      assert.equal(e.errno, Errno.ENOTTY);
      assert.match(e.message, /\/dev\/null is not a Xen privcmd device/);
      assert.match(e.message, /dom0/);
      return true;
    });
  });

  it('a device the user may not open says "run as root"', function () {
    this.timeout(10000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xg-'));
    const device = path.join(dir, 'privcmd');
    fs.writeFileSync(device, '');
    fs.chmodSync(dir, 0o755);
    fs.chmodSync(device, 0o600);
    try {
      const probe = `
        const { PrivcmdHypercalls } = require(${JSON.stringify(PRIVCMD_MODULE)});
        try { PrivcmdHypercalls.open({ device: ${JSON.stringify(device)} }); console.log('opened'); }
        catch (e) { console.log(JSON.stringify({ name: e.name, errno: e.errno, message: e.message })); }`;
      let out: string;
      if (process.getuid?.() === 0) {
        // Root may open anything: ask as nobody (a root-owned 0600 file).
        const r = spawnSync(process.execPath, ['-e', probe], { encoding: 'utf8', uid: 65534, gid: 65534, timeout: 8000 });
        if (r.error || r.status !== 0) {
          console.log(`      (skipped: cannot run a probe as uid 65534: ${r.error?.message ?? r.stderr})`);
          this.skip();
        }
        out = r.stdout;
      } else {
        fs.chmodSync(device, 0o000);
        const r = spawnSync(process.execPath, ['-e', probe], { encoding: 'utf8', timeout: 8000 });
        out = r.stdout;
      }
      const result: unknown = JSON.parse(out);
      assert.ok(typeof result === 'object' && result !== null);
      const { name, errno, message } = result as { name: unknown; errno: unknown; message: unknown };
      assert.equal(name, 'XenError');
      assert.equal(errno, Errno.EACCES);
      assert.match(String(message), /run as root/);
      assert.ok(String(message).includes(device));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('over the loopback hypervisor', () => {
    let xg: NativeAddon;
    let hc: PrivcmdHypercalls;
    let binds = 0;
    let channels: (NativeEventChannel & { peerFd: number })[] = [];

    beforeEach(() => {
      xg = loadAddon();
      binds = 0;
      channels = [];
      hc = new PrivcmdHypercalls(xg._openLoopback(), (virq, onEvent) => {
        assert.equal(virq, VIRQ_DEBUGGER);
        binds++;
        const ch = xg._testEventChannel(onEvent);
        channels.push(ch);
        return ch;
      });
    });
    afterEach(() => {
      hc.close();
      for (const ch of channels) {
        ch.close();
        fs.closeSync(ch.peerFd);
      }
    });

    it('is kind "xen" and names the device', () => {
      assert.equal(hc.kind, 'xen');
      assert.equal(hc.device, '<loopback>');
    });

    it('turns a failed domctl into a XenError named after the call', () => {
      const op = newDomctl(DomctlCmd.getdomaininfo, 0x15, 7);
      op.writeUInt32LE(Errno.ESRCH, 16); // loopback: fail with this errno
      assert.throws(() => hc.domctl(op), (e: unknown) =>
        e instanceof XenError && e.errno === Errno.ESRCH && e.op === 'XEN_DOMCTL_getdomaininfo');
    });

    it('returns the data and EFAULT prefix through DomctlData', () => {
      const buf = Buffer.alloc(32, 0xee);
      assert.throws(() => hc.domctl(memioRead(0x10n, 32, 4n), { buf, handleOffset: Off.memUva }), (e: unknown) =>
        e instanceof XenError && e.errno === Errno.EFAULT && e.op === 'XEN_DOMCTL_gdbsx_guestmemio');
      assert.deepEqual([...buf.subarray(0, 5)], [0x10, 0x11, 0x12, 0x13, 0xee]);
    });

    it('event_channel_op: EVTCHNOP_status through the addon (the struct read and written in place), EINVAL as the table\'s end', () => {
      const xc = new XenControl(hc);
      assert.deepEqual(xc.evtchnStatus(3, 7), { port: 7, status: 'interdomain', vcpu: 0, remoteDomid: 0, remotePort: 107 });
      assert.equal(xc.evtchnStatus(3, 4096), undefined);
      assert.throws(() => hc.eventChannelOp(99, Buffer.alloc(24)), (e: unknown) => e instanceof XenError && e.errno === Errno.ENOSYS && /event_channel_op\(99\)/.test(e.op));
    });

    it('serves XenControl: version and guest memory reads', () => {
      const xc = new XenControl(hc);
      const v = xc.version();
      assert.equal(v.major, 4);
      assert.equal(v.minor, 19);
      assert.equal(v.extra, '-loopback');
      const buf = Buffer.alloc(100);
      xc.guestMemIo(1, 0x2000n, buf, false);
      assert.equal(buf[99], 99);
    });

    it('binds VIRQ_DEBUGGER on the first listener, fans events out, unbinds after the last', async () => {
      const got: string[] = [];
      const offA = hc.onDebuggerEvent(() => got.push('a'));
      const offB = hc.onDebuggerEvent(() => got.push('b'));
      assert.equal(binds, 1);
      fs.writeSync(channels[0].peerFd, portBytes(42));
      await waitFor(() => got.length === 2, 'the event');
      assert.deepEqual(got.sort(), ['a', 'b']);
      offA();
      offA(); // idempotent
      fs.writeSync(channels[0].peerFd, portBytes(42));
      await waitFor(() => got.length === 3, 'the second event');
      assert.equal(got[2], 'b');
      offB();
      assert.equal(drain(channels[0].peerFd), 8, 'two unmasks, then EOF: the channel was closed');
      hc.onDebuggerEvent(() => {});
      assert.equal(binds, 2, 'binds again for a new listener');
    });

    it('a throwing listener does not stop the others', async () => {
      let ok = 0;
      hc.onDebuggerEvent(() => {
        throw new Error('listener bug');
      });
      hc.onDebuggerEvent(() => ok++);
      fs.writeSync(channels[0].peerFd, portBytes(1));
      await waitFor(() => ok === 1, 'the good listener');
    });

    it('close() unbinds the event channel', () => {
      hc.onDebuggerEvent(() => {});
      hc.close();
      assert.equal(drain(channels[0].peerFd), 0, 'EOF: channel closed');
      hc.onDebuggerEvent(() => {}); // after close: a no-op, no new bind
      assert.equal(binds, 1);
    });

    it('when binding fails (e.g. EBUSY: VIRQ owned elsewhere) it returns a no-op unsubscribe', () => {
      const busy = new PrivcmdHypercalls(xg._openLoopback(), () => {
        throw Object.assign(new Error('ioctl /dev/xen/evtchn: Device or resource busy'), { errno: Errno.EBUSY, syscall: 'ioctl' });
      });
      try {
        const off = busy.onDebuggerEvent(() => assert.fail('no events'));
        assert.equal(typeof off, 'function');
        off();
      } finally {
        busy.close();
      }
    });

    it('with the real addon binder and no /dev/xen/evtchn, subscribing is a no-op', function () {
      if (fs.existsSync('/dev/xen/evtchn')) this.skip();
      const real = new PrivcmdHypercalls(xg._openLoopback(), (virq, onEvent) => xg.bindVirq(virq, onEvent));
      try {
        real.onDebuggerEvent(() => {})();
      } finally {
        real.close();
      }
    });
  });

  describe('on a Xen dom0 (needs /dev/xen/privcmd)', function () {
    let hc: PrivcmdHypercalls | undefined;
    before(function () {
      if (!isDom0) {
        console.log('      (skipped: no /dev/xen/privcmd here: real hypercalls need a Xen dom0, e.g. the QEMU lab)');
        this.skip();
      }
      hc = PrivcmdHypercalls.open();
    });
    after(() => hc?.close());

    it('reads the Xen version and dom0 info', () => {
      assert.ok(hc);
      const xc = new XenControl(hc);
      const v = xc.version();
      assert.ok(v.major >= 4, `Xen ${v.major}.${v.minor}`);
      assert.equal(xc.getDomainInfo(0).domid, 0);
    });

    it('binds and unbinds VIRQ_DEBUGGER (or reports it taken)', () => {
      assert.ok(hc);
      const off = hc.onDebuggerEvent(() => {});
      off();
    });
  });
});
