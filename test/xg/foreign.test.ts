// Tests of the stock-Xen paths of the native addon and PrivcmdHypercalls: foreign
// mappings, hvm_op / memory_op, dm_op and interdomain event channels. Without Xen,
// they run over the addon's test doubles:
//  * the loopback privcmd emulates IOCTL_PRIVCMD_MMAPBATCH_V2 on the very struct the
//    kernel would get, over a memfd of 256 guest frames (the 8-byte word at guest
//    address a holds a); frame LOOPBACK_ERROR_FRAMES + E fails with errno E, other
//    frames are holes (EINVAL), domain 0x7ff4 does not exist. A refused frame is left
//    PROT_NONE, so a read or write that missed the per-frame check would crash this
//    process (SIGSEGV, standing in for privcmd's SIGBUS) instead of failing a test;
//  * its hypervisor dereferences hvm_op / memory_op / dm_op arguments as Xen would
//    (see native/xg/privcmd.cc);
//  * event channels run on a socketpair and record their notify/unbind ioctls.
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Errno, XenError } from '../../src/xg/errors';
import { ForeignMapping } from '../../src/xg/hypercalls';
import {
  ADDON_PATH, NativeAddon, NativePrivcmd, NativeTestEventChannel, PrivcmdHypercalls, isNativeSysError, loadAddon,
} from '../../src/xg/privcmd';

const PAGE = 4096;
const DOMID_INVALID = 0x7ff4;
const HVMOP_set_param = 0;
const HVMOP_get_param = 1;
const XENMEM_increase_reservation = 0;
const XENMEM_decrease_reservation = 1;
const XENMEM_populate_physmap = 6;
const XEN_DMOP_inject_event = 13;

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

/** Read `fd` to EOF (ECONNRESET counts as EOF); returns what was read. */
function drain(fd: number): Buffer {
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(64);
  for (;;) {
    let n: number;
    try {
      n = fs.readSync(fd, buf);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ECONNRESET') break;
      throw e;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return Buffer.concat(chunks);
}

/** The loopback guest's content: the word at guest address a is a. */
function word(frame: bigint, offset: number): bigint {
  return frame * BigInt(PAGE) + BigInt(offset);
}

/** How many pages of the loopback guest memfd this process has mapped. */
function loopbackGuestPagesMapped(): number {
  let pages = 0;
  for (const line of fs.readFileSync('/proc/self/maps', 'latin1').split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) .*memfd:xg-loopback-guest/.exec(line);
    if (m) pages += Number((BigInt('0x' + m[2]) - BigInt('0x' + m[1])) / BigInt(PAGE));
  }
  return pages;
}

function hvmParam(domid: number, index: number, value = 0n): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(domid, 0);
  b.writeUInt32LE(index, 4);
  b.writeBigUInt64LE(value, 8);
  return b;
}

function reservation(nrExtents: number, domid = 1, extentStart = 0n): Buffer {
  const b = Buffer.alloc(32);
  b.writeBigUInt64LE(extentStart, 0);
  b.writeBigUInt64LE(BigInt(nrExtents), 8);
  b.writeUInt16LE(domid, 24);
  return b;
}

function extents(...gfns: bigint[]): Buffer {
  const b = Buffer.alloc(8 * gfns.length);
  gfns.forEach((g, i) => b.writeBigUInt64LE(g, 8 * i));
  return b;
}

/** struct xen_dm_op for inject_event; `failWith` goes in the pad the loopback reads as an errno. */
function dmOpHeader(failWith = 0): Buffer {
  const b = Buffer.alloc(32);
  b.writeUInt32LE(XEN_DMOP_inject_event, 0);
  b.writeUInt32LE(failWith, 4);
  b.writeUInt8(3, 12); // vector #BP
  return b;
}

function isXenError(errno: number, op?: RegExp, hint?: RegExp): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof XenError, `not a XenError: ${String(e)}`);
    assert.equal(e.errno, errno, e.message);
    if (op) assert.match(e.op, op);
    if (hint) assert.match(e.hint, hint);
    return true;
  };
}

function isNative(errno: number, message?: RegExp): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(isNativeSysError(e), `not an addon errno error: ${String(e)}`);
    assert.equal(e.errno, errno, e.message);
    if (message) assert.match(e.message, message);
    return true;
  };
}

describe('xg addon: stock-Xen paths', () => {
  let xg: NativeAddon;
  let dev: NativePrivcmd;
  let ERR: number;

  before(() => {
    xg = loadAddon();
    ERR = xg.constants.LOOPBACK_ERROR_FRAMES;
  });
  beforeEach(() => {
    dev = xg._openLoopback();
  });
  afterEach(() => dev.close());

  it('is built with the Linux ABI numbers', () => {
    assert.equal(xg.constants.IOCTL_PRIVCMD_MMAPBATCH_V2, 0x00205004);
    assert.equal(xg.constants.IOCTL_PRIVCMD_DM_OP, 0x00105005);
    assert.equal(xg.constants.IOCTL_EVTCHN_BIND_INTERDOMAIN, 0x00084501);
    assert.equal(xg.constants.IOCTL_EVTCHN_NOTIFY, 0x00044504);
    assert.equal(xg.constants.XEN_PAGE_SIZE, PAGE);
    assert.equal(xg.constants.DM_OP_MAX_BUFS, 16);
    assert.equal(xg.constants.DM_OP_MAX_BUF_SIZE, 4096);
  });

  describe('mapForeign (loopback MMAPBATCH_V2)', () => {
    const frames = (...f: (number | bigint)[]) => BigUint64Array.from(f.map((x) => BigInt(x)));

    it('maps the frames in order, in one VMA, and reads across frame boundaries with one call', () => {
      const m = dev.mapForeign(1, frames(5, 2, 9), false);
      try {
        assert.equal(m.frames, 3);
        assert.equal(m.writable, false);
        assert.equal(m.mapped, true);
        assert.deepEqual(m.errors, [0, 0, 0]);
        const all = Buffer.alloc(3 * PAGE);
        m.read(0, all);
        for (const [i, f] of [5n, 2n, 9n].entries()) {
          for (const o of [0, 8, PAGE - 8]) assert.equal(all.readBigUInt64LE(i * PAGE + o), word(f, o), `frame ${i} +${o}`);
        }
        const across = Buffer.alloc(16);
        m.read(PAGE - 8, across);
        assert.equal(across.readBigUInt64LE(0), word(5n, PAGE - 8));
        assert.equal(across.readBigUInt64LE(8), word(2n, 0));
      } finally {
        m.unmap();
      }
    });

    it('reports per-frame errors as positive errnos without failing the mapping (paged-out frames make the ioctl return ENOENT)', () => {
      const m = dev.mapForeign(1, frames(1, ERR + Errno.ENOENT, 3, 0x99999, ERR + Errno.EPERM), false);
      try {
        assert.deepEqual(m.errors, [0, Errno.ENOENT, 0, Errno.EINVAL, Errno.EPERM]);
        const b = Buffer.alloc(8);
        m.read(PAGE - 8, b); // last word of frame 0
        assert.equal(b.readBigUInt64LE(0), word(1n, PAGE - 8));
        m.read(2 * PAGE, b); // first word of frame 2
        assert.equal(b.readBigUInt64LE(0), word(3n, 0));
      } finally {
        m.unmap();
      }
    });

    it('a mapping whose every frame failed (ioctl returns 0) is still a mapping', () => {
      const m = dev.mapForeign(1, frames(0x99999, ERR + Errno.ENOMEM), true);
      try {
        assert.deepEqual(m.errors, [Errno.EINVAL, Errno.ENOMEM]);
        assert.throws(() => m.read(0, Buffer.alloc(1)), isNative(Errno.EFAULT));
        m.read(2 * PAGE, Buffer.alloc(0)); // touches nothing
      } finally {
        m.unmap();
      }
    });

    it('refuses reads and writes that touch a refused frame with EFAULT naming it, and touches nothing', () => {
      const m = dev.mapForeign(1, frames(1, ERR + Errno.ENOENT, 3), true);
      try {
        const cases: [number, number][] = [[PAGE, 1], [PAGE + 100, 8], [PAGE - 4, 8], [2 * PAGE - 1, 2], [0, 3 * PAGE]];
        for (const [offset, len] of cases) {
          const into = Buffer.alloc(len, 0xee);
          assert.throws(() => m.read(offset, into), (e: unknown) => {
            assert.ok(isNativeSysError(e));
            assert.equal(e.errno, Errno.EFAULT);
            assert.equal(e.frame, 1);
            assert.equal(e.frameErrno, Errno.ENOENT);
            assert.match(e.message, /frame 1 \(0xe0002\)/);
            return true;
          }, `read ${len} at ${offset}`);
          assert.ok(into.every((x) => x === 0xee), 'nothing copied');
          assert.throws(() => m.write(offset, Buffer.alloc(len, 0x55)), isNative(Errno.EFAULT), `write ${len} at ${offset}`);
        }
        const b = Buffer.alloc(8);
        m.read(0, b);
        assert.equal(b.readBigUInt64LE(0), word(1n, 0), 'frame 0 untouched by the refused writes');
      } finally {
        m.unmap();
      }
    });

    it('checks bounds: RangeError past the end, TypeError for a bad offset or buffer', () => {
      const m = dev.mapForeign(1, frames(4, 5), true);
      try {
        const size = 2 * PAGE;
        m.read(size, Buffer.alloc(0));
        m.read(size - 8, Buffer.alloc(8));
        m.write(size - 8, Buffer.from(Buffer.alloc(8)).fill(0)); // fine, restored below
        m.write(size - 8, extents(word(5n, PAGE - 8)));
        assert.throws(() => m.read(size - 7, Buffer.alloc(8)), RangeError);
        assert.throws(() => m.read(size + 1, Buffer.alloc(0)), RangeError);
        assert.throws(() => m.write(size - 7, Buffer.alloc(8)), RangeError);
        assert.throws(() => m.read(0, Buffer.alloc(size + 1)), RangeError);
        assert.throws(() => m.read(2 ** 52, Buffer.alloc(1)), RangeError);
        assert.throws(() => m.read(-1, Buffer.alloc(1)), TypeError);
        assert.throws(() => m.read(1.5, Buffer.alloc(1)), TypeError);
        assert.throws(() => Reflect.apply(m.read, m, ['0', Buffer.alloc(1)]), TypeError);
        assert.throws(() => Reflect.apply(m.read, m, [0, new Array(4)]), TypeError);
        assert.throws(() => Reflect.apply(m.write, m, [0]), TypeError);
      } finally {
        m.unmap();
      }
    });

    it('writes through a writable mapping reach the guest frame, seen by another mapping of it', () => {
      const rw = dev.mapForeign(1, frames(7, 8), true);
      const ro = dev.mapForeign(1, frames(8), false);
      try {
        const data = Buffer.from('hello from dom0, across a frame boundary');
        rw.write(PAGE - 10, data);
        const back = Buffer.alloc(data.length);
        rw.read(PAGE - 10, back);
        assert.deepEqual(back, data);
        const seen = Buffer.alloc(data.length - 10);
        ro.read(0, seen);
        assert.deepEqual(seen, data.subarray(10), 'the other mapping shares the frame');
      } finally {
        rw.unmap();
        ro.unmap();
      }
    });

    it('refuses writes to a read-only mapping (EACCES) and leaves the frame alone', () => {
      const m = dev.mapForeign(1, frames(6), false);
      try {
        assert.throws(() => m.write(0, Buffer.alloc(8, 0xff)), isNative(Errno.EACCES, /read-only/));
        const b = Buffer.alloc(8);
        m.read(0, b);
        assert.equal(b.readBigUInt64LE(0), word(6n, 0));
      } finally {
        m.unmap();
      }
    });

    it('unmap() is idempotent, really unmaps, and later access fails with EFAULT', () => {
      const before = loopbackGuestPagesMapped();
      const m = dev.mapForeign(1, frames(1, 2, 3), true);
      assert.equal(loopbackGuestPagesMapped(), before + 3);
      m.unmap();
      assert.equal(loopbackGuestPagesMapped(), before);
      m.unmap();
      assert.equal(m.mapped, false);
      assert.equal(m.frames, 3);
      assert.throws(() => m.read(0, Buffer.alloc(8)), isNative(Errno.EFAULT, /unmapped/));
      assert.throws(() => m.write(0, Buffer.alloc(8)), isNative(Errno.EFAULT, /unmapped/));
      assert.throws(() => m.read(0, Buffer.alloc(0)), isNative(Errno.EFAULT, /unmapped/));
    });

    it('a mapping outlives the privcmd fd (as a privcmd VMA does)', () => {
      const d = xg._openLoopback();
      const m = d.mapForeign(1, frames(10), false);
      d.close();
      const b = Buffer.alloc(8);
      m.read(16, b);
      assert.equal(b.readBigUInt64LE(0), word(10n, 16));
      m.unmap();
      assert.throws(() => d.mapForeign(1, frames(10), false), /closed/);
    });

    it('the finalizer unmaps a mapping that was dropped without unmap()', function () {
      this.timeout(10000);
      const probe = `
        const fs = require('fs');
        const xg = require(${JSON.stringify(ADDON_PATH)});
        const pages = () => fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.includes('xg-loopback-guest')).length;
        const d = xg._openLoopback();
        (() => { d.mapForeign(1, BigUint64Array.from([1n, 3n, 5n]), false); })();
        const mapped = pages();
        gc();
        setTimeout(() => { gc(); setTimeout(() => console.log(mapped + ' ' + pages()), 50); }, 50);`;
      const r = spawnSync(process.execPath, ['--expose-gc', '-e', probe], { encoding: 'utf8', timeout: 8000 });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim(), '3 0');
    });

    it('a batch that fails as a whole throws and leaves nothing mapped', () => {
      const before = loopbackGuestPagesMapped();
      assert.throws(() => dev.mapForeign(DOMID_INVALID, frames(1, 2), false), (e: unknown) => {
        assert.ok(isNativeSysError(e));
        assert.equal(e.errno, Errno.ESRCH);
        assert.equal(e.syscall, 'ioctl');
        return true;
      });
      assert.equal(loopbackGuestPagesMapped(), before);
    });

    it('copies 2 MiB (512 frames) in one read', () => {
      const list = Array.from({ length: 512 }, (_, i) => BigInt((i * 7) % 256));
      const m = dev.mapForeign(1, BigUint64Array.from(list), false);
      try {
        const big = Buffer.alloc(512 * PAGE);
        m.read(0, big);
        for (let i = 0; i < 512; i += 37) {
          assert.equal(big.readBigUInt64LE(i * PAGE + 24), word(list[i], 24), `frame ${i}`);
        }
      } finally {
        m.unmap();
      }
    });

    const bad: [string, () => unknown][] = [
      ['frames not a BigUint64Array', () => Reflect.apply(dev.mapForeign, dev, [1, [1n], false])],
      ['frames a BigInt64Array', () => Reflect.apply(dev.mapForeign, dev, [1, BigInt64Array.from([1n]), false])],
      ['no frames', () => dev.mapForeign(1, new BigUint64Array(0), false)],
      ['writable not a boolean', () => Reflect.apply(dev.mapForeign, dev, [1, frames(1), 1])],
      ['domid out of range', () => dev.mapForeign(0x10000, frames(1), false)],
      ['domid negative', () => dev.mapForeign(-1, frames(1), false)],
    ];
    for (const [name, call] of bad) it(`TypeError: ${name}`, () => assert.throws(call, TypeError));
  });

  describe('hvmOp and memoryOp (loopback hypervisor)', () => {
    it('hvm_op: the arg is copied in and back (set_param, then get_param)', () => {
      assert.equal(dev.hvmOp(HVMOP_set_param, hvmParam(1, 28, 0xfeff0n)), 0);
      const get = hvmParam(1, 28, 0xdeadn);
      assert.equal(dev.hvmOp(HVMOP_get_param, get), 0);
      assert.equal(get.readBigUInt64LE(8), 0xfeff0n);
      assert.equal(get.readUInt32LE(4), 28, 'rest of the arg copied back unchanged');
    });

    it('hvm_op failures carry the errno', () => {
      assert.throws(() => dev.hvmOp(HVMOP_get_param, hvmParam(1, 64)), isNative(Errno.EINVAL));
      assert.throws(() => dev.hvmOp(HVMOP_get_param, hvmParam(DOMID_INVALID, 1)), isNative(Errno.ESRCH));
      assert.throws(() => dev.hvmOp(99, hvmParam(1, 1)), isNative(Errno.ENOSYS));
    });

    it('memory_op: data goes in at the handle, comes back filled, the caller keeps its handle bytes', () => {
      const arg = reservation(4, 1, 0x1234567n);
      const data = extents(10n, 11n, 12n, 13n);
      assert.equal(dev.memoryOp(XENMEM_increase_reservation, arg, data, 0), 4);
      assert.deepEqual([0, 1, 2, 3].map((i) => data.readBigUInt64LE(8 * i)), [0x100000n, 0x100001n, 0x100002n, 0x100003n]);
      assert.equal(arg.readBigUInt64LE(0), 0x1234567n, 'not our bounce-buffer address');
    });

    it('memory_op returns the number of extents done (partial), from the start extent in cmd', () => {
      const data = extents(1n, 2n, 3n, ~0n & ((1n << 64n) - 1n), 5n);
      assert.equal(dev.memoryOp(XENMEM_populate_physmap, reservation(5), data, 0), 3);
      assert.equal(dev.memoryOp(XENMEM_decrease_reservation | (4 << 6), reservation(5), data, 0), 5, 'starts at extent 4');
      assert.equal(dev.memoryOp(XENMEM_decrease_reservation, reservation(0)), 0, 'no extents, null handle');
    });

    it('memory_op refuses a reservation whose array Xen would overrun, before the call', () => {
      assert.throws(() => dev.memoryOp(XENMEM_decrease_reservation, reservation(3), extents(1n, 2n), 0), TypeError);
      assert.throws(() => dev.memoryOp(XENMEM_increase_reservation, reservation(1, 1, 0x7000n)), TypeError,
        'a raw extent_start without data');
      assert.throws(() => dev.memoryOp(XENMEM_populate_physmap, Buffer.alloc(16)), TypeError, 'short reservation');
      assert.throws(() => dev.memoryOp(XENMEM_populate_physmap, Buffer.alloc(40), extents(1n), 8), TypeError,
        'the array must be extent_start');
    });

    it('memory_op failures carry the errno', () => {
      assert.throws(() => dev.memoryOp(XENMEM_decrease_reservation, reservation(2)), isNative(Errno.EFAULT));
      assert.throws(() => dev.memoryOp(XENMEM_populate_physmap, reservation(1, DOMID_INVALID), extents(1n), 0),
        isNative(Errno.ESRCH));
      assert.throws(() => dev.memoryOp(7, Buffer.alloc(8)), isNative(Errno.ENOSYS));
    });

    const bad: [string, () => unknown][] = [
      ['hvmOp arg missing', () => Reflect.apply(dev.hvmOp, dev, [1])],
      ['hvmOp arg larger than a page', () => dev.hvmOp(1, Buffer.alloc(PAGE + 1))],
      ['hvmOp with a data buffer', () => Reflect.apply(dev.hvmOp, dev, [1, Buffer.alloc(16), Buffer.alloc(8), 0])],
      ['hvmOp cmd negative', () => dev.hvmOp(-1, Buffer.alloc(16))],
      ['hvmOp cmd above 32 bits', () => dev.hvmOp(2 ** 32, Buffer.alloc(16))],
      ['memoryOp handleOffset misaligned', () => dev.memoryOp(2, Buffer.alloc(32), Buffer.alloc(8), 4)],
      ['memoryOp handleOffset past the arg', () => dev.memoryOp(2, Buffer.alloc(32), Buffer.alloc(8), 32)],
      ['memoryOp handleOffset without data', () => dev.memoryOp(2, Buffer.alloc(32), undefined, 0)],
      ['memoryOp data without handleOffset', () => dev.memoryOp(2, Buffer.alloc(32), Buffer.alloc(8))],
      ['memoryOp arg too short for a handle', () => dev.memoryOp(2, Buffer.alloc(4), Buffer.alloc(8), 0)],
    ];
    for (const [name, call] of bad) it(`TypeError: ${name}`, () => assert.throws(call, TypeError));

    it('calls after close() throw', () => {
      const d = xg._openLoopback();
      d.close();
      assert.throws(() => d.hvmOp(1, hvmParam(1, 1)), /closed/);
      assert.throws(() => d.memoryOp(7, Buffer.alloc(8)), /closed/);
      assert.throws(() => d.dmOp(1, [dmOpHeader()]), /closed/);
    });
  });

  describe('dmOp (loopback IOCTL_PRIVCMD_DM_OP)', () => {
    it('passes domid and every buffer, in and out', () => {
      const bufs = [dmOpHeader(), Buffer.alloc(100, 10), Buffer.alloc(4096, 20)];
      const before = bufs.map((b) => Buffer.from(b));
      assert.equal(dev.dmOp(5, bufs), 5);
      bufs.forEach((b, i) => {
        assert.equal(b.length, before[i].length);
        for (let j = 0; j < b.length; j += 61) assert.equal(b[j], (before[i][j] + i + 1) & 0xff, `buf ${i} byte ${j}`);
      });
    });

    it('failures carry the errno', () => {
      assert.throws(() => dev.dmOp(5, [dmOpHeader(Errno.EBUSY)]), isNative(Errno.EBUSY));
      assert.throws(() => dev.dmOp(DOMID_INVALID, [dmOpHeader()]), isNative(Errno.ESRCH));
    });

    it('refuses what privcmd would, before the ioctl: >16 buffers, a buffer >4096 bytes, none', () => {
      const many = Array.from({ length: 17 }, () => dmOpHeader());
      assert.throws(() => dev.dmOp(5, many), isNative(Errno.E2BIG, /17 buffers; privcmd takes at most 16/));
      assert.ok(many.every((b) => b.readUInt32LE(0) === XEN_DMOP_inject_event && b[8] === 0), 'untouched');
      const big = [dmOpHeader(), Buffer.alloc(4097)];
      assert.throws(() => dev.dmOp(5, big), isNative(Errno.E2BIG, /bufs\[1\] is 4097 bytes/));
      assert.equal(big[0].readUInt32LE(0), XEN_DMOP_inject_event, 'untouched');
      assert.throws(() => dev.dmOp(5, []), isNative(Errno.EINVAL, /no buffers/));
      assert.equal(dev.dmOp(5, Array.from({ length: 16 }, () => Buffer.alloc(4096))), 5, '16 x 4096 is fine');
    });

    const bad: [string, () => unknown][] = [
      ['bufs not an array', () => Reflect.apply(dev.dmOp, dev, [5, dmOpHeader()])],
      ['a buffer not a Buffer', () => Reflect.apply(dev.dmOp, dev, [5, [dmOpHeader(), 'x']])],
      ['domid out of range', () => dev.dmOp(0x10000, [dmOpHeader()])],
    ];
    for (const [name, call] of bad) it(`TypeError: ${name}`, () => assert.throws(call, TypeError));
  });

  describe('interdomain event channels', () => {
    it('notify() and the unbind in close() use the local port (recorded by the socketpair double); close is idempotent', () => {
      const ch = xg._testEventChannel(() => {}, 77);
      try {
        assert.equal(ch.port, 77);
        ch.notify();
        ch.notify();
        ch.close();
        ch.close();
        const { IOCTL_EVTCHN_NOTIFY: N, IOCTL_EVTCHN_UNBIND: U } = xg.constants;
        assert.deepEqual(ch._ioctls, [{ request: N, port: 77 }, { request: N, port: 77 }, { request: U, port: 77 }]);
        assert.throws(() => ch.notify(), /closed/);
        assert.equal(drain(ch.peerFd).length, 0, 'EOF: fd closed');
      } finally {
        fs.closeSync(ch.peerFd);
      }
    });

    it('bindInterdomain reaches the ioctl on the device it opened', () => {
      assert.throws(() => xg.bindInterdomain(1, 5, () => {}, '/dev/null'), (e: unknown) =>
        isNativeSysError(e) && e.syscall === 'ioctl' && e.errno === Errno.ENOTTY && e.path === '/dev/null');
      const missing = path.join(os.tmpdir(), `no-such-evtchn-${process.pid}`);
      assert.throws(() => xg.bindInterdomain(1, 5, () => {}, missing), (e: unknown) =>
        isNativeSysError(e) && e.syscall === 'open' && e.errno === Errno.ENOENT && e.path === missing);
    });

    const bad: [string, () => unknown][] = [
      ['domid out of range', () => xg.bindInterdomain(0x10000, 1, () => {})],
      ['remotePort negative', () => xg.bindInterdomain(1, -1, () => {})],
      ['remotePort above 32 bits', () => xg.bindInterdomain(1, 2 ** 32, () => {})],
      ['no callback', () => Reflect.apply(xg.bindInterdomain, xg, [1, 1])],
      ['path not a string', () => Reflect.apply(xg.bindInterdomain, xg, [1, 1, () => {}, 3])],
      ['_testEventChannel port not an integer', () => xg._testEventChannel(() => {}, 1.5)],
    ];
    for (const [name, call] of bad) it(`TypeError: ${name}`, () => assert.throws(call, TypeError));
  });
});

describe('PrivcmdHypercalls: stock-Xen paths over the loopback', () => {
  let xg: NativeAddon;
  let hc: PrivcmdHypercalls;
  let ERR: bigint;
  let binds: { domid: number; remotePort: number }[];
  let channels: NativeTestEventChannel[];

  beforeEach(() => {
    xg = loadAddon();
    ERR = BigInt(xg.constants.LOOPBACK_ERROR_FRAMES);
    binds = [];
    channels = [];
    hc = new PrivcmdHypercalls(xg._openLoopback(), () => assert.fail('no VIRQ here'), (domid, remotePort, onEvent) => {
      binds.push({ domid, remotePort });
      const ch = xg._testEventChannel(onEvent, 40 + channels.length);
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

  describe('mapForeign', () => {
    let m: ForeignMapping | undefined;
    afterEach(() => m?.unmap());

    it('maps, reads and writes; errors are a frozen per-frame array', () => {
      m = hc.mapForeign(3, [20n, ERR + BigInt(Errno.EPERM), 21n], true);
      assert.equal(m.frames, 3);
      assert.equal(m.writable, true);
      assert.deepEqual(m.errors, [0, Errno.EPERM, 0]);
      assert.ok(Object.isFrozen(m.errors));
      const b = Buffer.alloc(8);
      m.read(2 * PAGE + 8, b);
      assert.equal(b.readBigUInt64LE(0), word(21n, 8));
      m.write(0, extents(0x1122334455667788n));
      m.read(0, b);
      assert.equal(b.readBigUInt64LE(0), 0x1122334455667788n);
      m.write(0, extents(word(20n, 0)));
    });

    it('access over a refused frame is XenError EFAULT naming the domain, the frame and Xen\'s errno', () => {
      m = hc.mapForeign(3, [20n, ERR + BigInt(Errno.ENOENT)], false);
      assert.throws(() => m?.read(PAGE - 8, Buffer.alloc(16)), (e: unknown) => {
        assert.ok(e instanceof XenError);
        assert.equal(e.errno, Errno.EFAULT);
        assert.match(e.op, /dom3/);
        assert.match(e.op, /frame 0xe0002, index 1/);
        assert.match(e.hint, /ENOENT/);
        assert.match(e.message, /EFAULT/);
        return true;
      });
    });

    it('read-only and unmapped mappings refuse with EACCES and EFAULT XenErrors; bounds stay RangeErrors', () => {
      m = hc.mapForeign(3, [20n], false);
      assert.throws(() => m?.write(0, Buffer.alloc(1)), isXenError(Errno.EACCES, /write of 1 bytes .* dom3/, /read-only/));
      assert.throws(() => m?.read(PAGE, Buffer.alloc(1)), RangeError);
      m.unmap();
      m.unmap();
      assert.throws(() => m?.read(0, Buffer.alloc(1)), isXenError(Errno.EFAULT, /read/, /unmapped/));
    });

    it('a mapping that cannot be made at all is a XenError', () => {
      assert.throws(() => hc.mapForeign(DOMID_INVALID, [1n], false),
        isXenError(Errno.ESRCH, /IOCTL_PRIVCMD_MMAPBATCH_V2 \(dom32756, 1 frames\)/, /no such domain/));
    });

    it('frame numbers must be 64-bit unsigned bigints', () => {
      assert.throws(() => hc.mapForeign(3, [-1n], false), TypeError);
      assert.throws(() => hc.mapForeign(3, [1n << 64n], false), TypeError);
      assert.throws(() => hc.mapForeign(3, [1 as unknown as bigint], false), TypeError);
      assert.throws(() => hc.mapForeign(3, [], false), TypeError);
    });
  });

  it('hvmOp round-trips its arg and names failures __HYPERVISOR_hvm_op(cmd)', () => {
    hc.hvmOp(HVMOP_set_param, hvmParam(3, 28, 0x1234n));
    const get = hvmParam(3, 28);
    assert.equal(hc.hvmOp(HVMOP_get_param, get), 0);
    assert.equal(get.readBigUInt64LE(8), 0x1234n);
    assert.throws(() => hc.hvmOp(HVMOP_get_param, hvmParam(3, 99)), isXenError(Errno.EINVAL, /^__HYPERVISOR_hvm_op\(1\)$/));
  });

  it('memoryOp passes DomctlData and names failures __HYPERVISOR_memory_op(cmd)', () => {
    const buf = extents(0n, 0n);
    assert.equal(hc.memoryOp(XENMEM_increase_reservation, reservation(2), { buf, handleOffset: 0 }), 2);
    assert.equal(buf.readBigUInt64LE(8), 0x100001n);
    assert.throws(() => hc.memoryOp(XENMEM_populate_physmap, reservation(1, DOMID_INVALID), { buf, handleOffset: 0 }),
      isXenError(Errno.ESRCH, /^__HYPERVISOR_memory_op\(6\)$/));
    assert.throws(() => hc.memoryOp(XENMEM_populate_physmap, reservation(3), { buf, handleOffset: 0 }), TypeError);
  });

  it('dmOp names failures after the dm_op and domain; limits are E2BIG/EINVAL XenErrors saying why', () => {
    const bufs = [dmOpHeader(), Buffer.alloc(4)];
    assert.equal(hc.dmOp(9, bufs), 9);
    assert.deepEqual([...bufs[1]], [2, 2, 2, 2]);
    assert.throws(() => hc.dmOp(9, [dmOpHeader(Errno.EBUSY)]), isXenError(Errno.EBUSY, /^__HYPERVISOR_dm_op\(13\) on dom9$/));
    assert.throws(() => hc.dmOp(9, Array.from({ length: 17 }, () => dmOpHeader())), isXenError(Errno.E2BIG, /dm_op/, /at most 16/));
    assert.throws(() => hc.dmOp(9, [Buffer.alloc(5000)]), isXenError(Errno.E2BIG, /dm_op/, /at most 4096/));
    assert.throws(() => hc.dmOp(9, []), isXenError(Errno.EINVAL, /dm_op\(\?\)/, /no buffers/));
  });

  describe('bindInterdomain', () => {
    it('binds with the domain and remote port, delivers events, unmasks, notifies on the local port', async () => {
      let events = 0;
      const port = hc.bindInterdomain(4, 9, () => events++);
      assert.deepEqual(binds, [{ domid: 4, remotePort: 9 }]);
      assert.equal(port.localPort, 40);
      const ch = channels[0];
      fs.writeSync(ch.peerFd, portBytes(40));
      await waitFor(() => events === 1, 'the first event');
      fs.writeSync(ch.peerFd, portBytes(40));
      await waitFor(() => events === 2, 'the second event');
      const echo = Buffer.alloc(8);
      for (let got = 0; got < 8;) got += fs.readSync(ch.peerFd, echo, got, 8 - got, null);
      assert.deepEqual(echo, portBytes(40, 40), 'unmasked after each event');
      port.notify();
      assert.deepEqual(ch._ioctls, [{ request: xg.constants.IOCTL_EVTCHN_NOTIFY, port: 40 }]);
    });

    it('close() unbinds once, stops delivery, and is idempotent; notify after close throws', async () => {
      let events = 0;
      const port = hc.bindInterdomain(4, 9, () => events++);
      const ch = channels[0];
      port.close();
      port.close();
      assert.deepEqual(ch._ioctls, [{ request: xg.constants.IOCTL_EVTCHN_UNBIND, port: 40 }]);
      assert.equal(drain(ch.peerFd).length, 0, 'EOF: the channel fd is closed');
      assert.throws(() => port.notify(), /closed/);
      await sleep(20);
      assert.equal(events, 0);
    });

    it('a throwing callback is logged, and later events still arrive', async () => {
      let calls = 0;
      hc.bindInterdomain(4, 9, () => {
        calls++;
        throw new Error('listener bug');
      });
      fs.writeSync(channels[0].peerFd, portBytes(40));
      await waitFor(() => calls === 1, 'the first event');
      fs.writeSync(channels[0].peerFd, portBytes(40));
      await waitFor(() => calls === 2, 'the second event');
    });

    it('closing the backend closes its open event ports', () => {
      hc.bindInterdomain(4, 9, () => {});
      const second = hc.bindInterdomain(5, 10, () => {});
      second.close();
      hc.close();
      assert.equal(channels[0]._ioctls.length, 1, 'the first port was unbound');
      assert.equal(channels[1]._ioctls.length, 1, 'the second was not unbound twice');
      assert.throws(() => hc.bindInterdomain(4, 9, () => {}), /closed/);
    });

    it('binding failures are XenErrors with a hint', () => {
      const real = new PrivcmdHypercalls(xg._openLoopback(), () => assert.fail('no VIRQ'),
        (domid, remotePort, onEvent) => xg.bindInterdomain(domid, remotePort, onEvent, '/dev/null'));
      try {
        assert.throws(() => real.bindInterdomain(4, 9, () => {}),
          isXenError(Errno.ENOTTY, /IOCTL_EVTCHN_BIND_INTERDOMAIN \(dom4 port 9\)/));
      } finally {
        real.close();
      }
    });

    it('with the default binder and no /dev/xen/evtchn, says to load xen-evtchn', function () {
      if (fs.existsSync('/dev/xen/evtchn')) this.skip();
      const real = new PrivcmdHypercalls(xg._openLoopback(), () => assert.fail('no VIRQ'));
      try {
        assert.throws(() => real.bindInterdomain(4, 9, () => {}), isXenError(Errno.ENOENT, /BIND_INTERDOMAIN/, /xen-evtchn/));
      } finally {
        real.close();
      }
    });
  });
});
