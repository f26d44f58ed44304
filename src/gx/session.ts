// One gdb connection: framing and acks in, replies out, dispatch to the packet
// handlers, and the all-stop resume cycle (only 0x03 is expected while the guest
// runs; anything else is queued until the stop reply is out).
import { Socket } from 'net';
import createDebug from 'debug';
import { Framer } from './framer';
import { ProtocolError, closeFrame, errorReply, frame, hexBlocksInto, hexRleInto, rleEncode } from './packet';
import { Guest, StopEvent } from '../vcpu/guest';
import { RefusedError } from '../vcpu/runControl';
import { XenError } from '../xg/errors';
import { dispatch } from './handlers';
import { stopReply } from './stopReply';
import { RegView, regView } from './regView';
import type { XsTransport } from '../xs/transport';
import type { DomainBroker } from './broker';

const log = createDebug('gdbsx:gx');
const logPkt = createDebug('gdbsx:packets');

/** Largest packet we accept (advertised as PacketSize): gdb then reads 2 MiB per `m`. */
export const PACKET_SIZE = 0x400000;

/** A reply already framed ($payload#cs), sent as it is. */
export class Framed {
  constructor(readonly bytes: Buffer) {}
}

export type Reply = string | Buffer | Framed | null;

export interface Packet {
  /** The payload as latin1 text (command letters, hex). */
  text: string;
  /** The raw payload (for binary X data). */
  raw: Buffer;
}

export class Session {
  /** The domain under debug; none in extended mode before `attach` and after `detach`/`kill`. */
  private current: Guest | undefined;
  private shownRegs: RegView | undefined;
  /** gdb sent `!` (extended-remote): detach and kill leave the connection open (extended.ts). */
  extended = false;
  /** Who attaches domains for `vAttach` (the server); see broker.ts. */
  broker: DomainBroker | undefined;
  private readonly sock: Socket;
  private readonly framer = new Framer(PACKET_SIZE + 16);
  private noAck = false;
  private lastSent: Buffer | undefined;
  private busy = false;
  private readonly queue: Buffer[] = [];
  private closed = false;
  private readonly onClose: () => void;
  // Reused for memory replies: a fresh megabyte per `m` costs more than the read itself
  // in a PV dom0 (see hexRleInto).
  private readBuf = Buffer.alloc(0);
  private outBuf = Buffer.alloc(0);

  // Negotiated features.
  multiprocess = false;
  swbreak = false;
  hwbreak = false;
  /** LLDB: g/G/p/P may name their thread with a `;thread:<id>;` suffix. */
  threadSuffix = false;
  /** The VCPU the last suffixed register access named (LLDB's selected thread); reset at each stop. */
  suffixVcpu: number | undefined;
  /** LLDB: T replies list the threads, their pcs and names (lldbStop.ts). */
  listThreadsInStopReply = false;
  /** Thread selected by Hg (registers, memory) and Hc (legacy c/s); undefined = "any". */
  gVcpu: number | undefined;
  cVcpu: number | 'all' | undefined;
  private warnedUserMode = false;
  /** The guest's notes (what this hypervisor allows) go to gdb's console once, at the first resume. */
  private toldNotes = false;
  /** How `monitor info` reaches xenstore (the simulated one on the simulated Xen); unset: the real one. */
  xenstore: (() => Promise<XsTransport>) | undefined;
  /** The last stop, answered again for '?'. */
  lastStop: StopEvent;
  /** Work for right after the reply being built has gone out (see runUntilStop). */
  private afterReply: (() => void) | undefined;

  /** Refusals already told to the stub's user (gdb shows some of them only as "Cannot insert breakpoint"). */
  private readonly toldRefusals = new Set<string>();
  /**
   * Refused watchpoints, told to gdb's console at the next resume: gdb shows only its own
   * "Could not insert hardware watchpoint" for an error reply to Z2-Z4, not our reason.
   */
  private readonly refusalsForGdb: string[] = [];
  readonly onNote: (message: string) => void;
  /** The server's notes for gdb, told with the guest's. */
  private readonly serverNotes: readonly string[];

  constructor(sock: Socket, guest: Guest | undefined, onClose: () => void, onNote: (message: string) => void = () => undefined, notes: readonly string[] = []) {
    this.sock = sock;
    this.onClose = onClose;
    this.onNote = onNote;
    this.serverNotes = notes;
    this.lastStop = { kind: 'exited', code: 0, message: '' };
    if (guest) this.setGuest(guest);
    sock.setNoDelay(true);
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    sock.on('close', () => this.close('connection closed'));
    sock.on('error', (e) => this.close(`socket error: ${e.message}`));
  }

  /** The attached domain; a packet that needs one gets `E.<this message>` without it. */
  get guest(): Guest {
    if (!this.current) throw new RefusedError('no domain attached: `attach <domid>` first (`info os processes` lists the domains)');
    return this.current;
  }

  /** The registers this client is shown. */
  get regs(): RegView {
    if (!this.shownRegs) this.shownRegs = regView(this.guest);
    return this.shownRegs;
  }

  /** The attached domain, if any. */
  get attached(): Guest | undefined {
    return this.current;
  }

  /** Serve `guest` from now on (stopped, as attach leaves it), or no domain. */
  setGuest(guest: Guest | undefined): void {
    this.current = guest;
    this.shownRegs = undefined;
    this.gVcpu = undefined;
    this.cVcpu = undefined;
    this.toldNotes = false;
    this.warnedUserMode = false;
    this.lastStop = guest ? { kind: 'stopped', vcpu: guest.vcpus()[0] ?? 0, signal: 5 } : { kind: 'exited', code: 0, message: '' };
  }

  /** The VCPU whose address space `m`, `M`, `x`, `X` use: LLDB's selected thread, else the Hg one. */
  get memoryVcpu(): number {
    const v = this.suffixVcpu;
    return v !== undefined && this.guest.isOnline(v) ? v : this.currentVcpu;
  }

  /** The VCPU that `g`, `m` and friends act on. */
  get currentVcpu(): number {
    const v = this.gVcpu;
    return v !== undefined && this.guest.isOnline(v) ? v : this.stoppedVcpu;
  }

  get stoppedVcpu(): number {
    return this.lastStop.kind === 'stopped' ? this.lastStop.vcpu : this.guest.vcpus()[0] ?? 0;
  }

  private onData(chunk: Buffer): void {
    for (const ev of this.framer.push(chunk)) {
      switch (ev.type) {
        case 'interrupt':
          log('interrupt (0x03)');
          this.guest.interrupt();
          break;
        case 'nak':
          if (!this.noAck && this.lastSent) this.sock.write(this.lastSent);
          break;
        case 'ack':
          break;
        case 'bad-checksum':
          log('bad checksum on %s', ev.data.subarray(0, 40).toString('latin1'));
          if (!this.noAck) this.sock.write('-');
          break;
        case 'oversized':
          // Too big to be a real request: refuse it rather than buffer without limit.
          if (!this.noAck) this.sock.write('+');
          this.send(errorReply(0x07 /* E2BIG */));
          break;
        case 'packet':
          if (!this.noAck) this.sock.write('+');
          if (this.busy) this.queue.push(ev.data);
          else this.handle(ev.data);
          break;
      }
    }
  }

  /**
   * Handle a packet and then any queued behind it. Synchronous while the handlers are
   * (all but resumes): no promise or microtask per packet, which is measurable per
   * round trip where dom0 runs under emulation.
   */
  private handle(first: Buffer): void {
    this.busy = true;
    let next: Buffer | undefined = first;
    while (next !== undefined) {
      const pending = this.handleOne(next);
      if (pending) {
        const done = () => {
          this.busy = false;
          if (this.queue.length > 0 && !this.closed) this.handle(this.queue.shift() as Buffer);
        };
        void pending.then(done, (e: unknown) => {
          log('internal error answering a packet: %s', (e as Error)?.stack ?? String(e));
          done();
        });
        return;
      }
      next = this.closed ? undefined : this.queue.shift();
    }
    this.busy = false;
  }

  /** Answers one packet; a promise only if its handler is asynchronous (resumes). */
  private handleOne(data: Buffer): Promise<void> | undefined {
    const pkt: Packet = { text: data.toString('latin1'), raw: data };
    if (logPkt.enabled) logPkt('<- %s', pkt.text.length > 200 ? pkt.text.slice(0, 200) + '...' : pkt.text);
    let reply: Reply | Promise<Reply>;
    try {
      reply = dispatch(this, pkt);
    } catch (e) {
      reply = this.errorFor(e, pkt.text);
    }
    if (reply instanceof Promise) {
      return reply.then((r) => this.answer(pkt, r), (e: unknown) => this.answer(pkt, this.errorFor(e, pkt.text)));
    }
    this.answer(pkt, reply);
    return undefined;
  }

  private answer(pkt: Packet, reply: Reply): void {
    if (reply !== null && !this.closed) this.send(reply);
    if (pkt.text === 'QStartNoAckMode' && reply === 'OK') this.noAck = true;
    const after = this.afterReply;
    this.afterReply = undefined;
    after?.();
  }

  private errorFor(e: unknown, what: string): string {
    if (e instanceof RefusedError) {
      // gdb prints the text of an `E.` reply ("Remote failure reply: E.…") where it shows errors at all.
      log('refused %s: %s', what.slice(0, 60), e.message);
      if (!this.toldRefusals.has(e.message)) {
        this.toldRefusals.add(e.message);
        const watch = /^Z[234]/.test(what);
        this.onNote(`refused ${watch ? 'a watchpoint' : what[0] === 'Z' ? 'a breakpoint' : what.startsWith('vCont') || what[0] === 's' ? 'a step' : `'${what.slice(0, 20)}'`}: ${e.message}`);
        if (watch) this.refusalsForGdb.push(`gdbsx: a watchpoint was refused: ${e.message}\n`);
      }
      return `E.${e.message}`;
    }
    if (e instanceof ProtocolError) {
      log('bad packet %s: %s', what.slice(0, 60), e.message);
      return errorReply(e.errno);
    }
    if (e instanceof XenError) {
      log('%s: %s', what.slice(0, 60), e.message);
      return errorReply(e.errno);
    }
    log('internal error on %s: %s', what.slice(0, 60), (e as Error)?.stack ?? String(e));
    return errorReply(0x05 /* EIO */);
  }

  /** A scratch buffer for guest memory read for a reply (valid until the next request). */
  readBuffer(n: number): Buffer {
    if (this.readBuf.length < n) this.readBuf = Buffer.allocUnsafe(Math.max(n, 4096));
    return this.readBuf.subarray(0, n);
  }

  /** `data` as a framed, run-length encoded hex reply, built in a reused buffer. */
  hexReply(data: Buffer): Framed {
    const need = 2 * data.length + 4;
    let out = this.outBuf;
    // The socket may still hold the previous reply (a slow reader): never overwrite it.
    if (this.sock.writableLength > 0) out = Buffer.allocUnsafe(need);
    else if (out.length < need) out = this.outBuf = Buffer.allocUnsafe(Math.max(need, 4096));
    out[0] = 0x24;
    const end = data.length > 1024 ? hexBlocksInto(data, out, 1) : hexRleInto(data, out, 1);
    return new Framed(closeFrame(out, end));
  }

  /** Send one reply packet ('O' console packets included). Hex replies get RLE. */
  send(reply: string | Buffer | Framed, rle = typeof reply === 'string'): void {
    if (this.closed) return;
    if (reply instanceof Framed) {
      // (Only when logging: the text of every reply would be built for nothing.)
      if (logPkt.enabled) logPkt('-> %s', reply.bytes.length > 200 ? reply.bytes.subarray(1, 200).toString('latin1') + '...' : reply.bytes.toString('latin1'));
      this.lastSent = reply.bytes;
      this.sock.write(reply.bytes);
      return;
    }
    let payload = typeof reply === 'string' ? Buffer.from(reply, 'latin1') : reply;
    if (rle && payload.length > 8) payload = rleEncode(payload);
    const framed = frame(payload);
    if (logPkt.enabled) logPkt('-> %s', payload.length > 200 ? payload.subarray(0, 200).toString('latin1') + '...' : payload.toString('latin1'));
    this.lastSent = framed;
    this.sock.write(framed);
  }

  /** Console output to gdb (shown to the user), allowed while a resume or qRcmd is answered. */
  console(text: string): void {
    this.send('O' + Buffer.from(text, 'utf8').toString('hex'));
  }

  /** Resume the guest and answer with the stop; the reported thread becomes the selected one. */
  async runUntilStop(run: () => Promise<StopEvent>): Promise<Reply> {
    const ev = await run();
    if (!this.toldNotes) {
      this.toldNotes = true;
      // The protocol has console output only while a resume (or a monitor command) is answered.
      for (const n of this.serverNotes) this.console(`gdbsx: ${n}\n`);
      for (const n of this.guest.notes) this.console(`gdbsx: note: ${n}\n`);
    }
    for (const m of this.refusalsForGdb.splice(0)) this.console(m);
    if (ev.message) this.console(ev.message);
    this.lastStop = ev;
    if (ev.kind === 'stopped') {
      this.gVcpu = ev.vcpu; // gdb's record_currthread(): the stopping thread is now "general"
      this.suffixVcpu = undefined;
      this.guest.refreshVcpusAfterStop();
      // gdb reads the byte at pc next: fetched while it decodes the reply.
      const g = this.guest;
      this.afterReply = () => g.warmAfterStop(ev.vcpu);
      if (this.guest.memioBlindToKernel() && !this.warnedUserMode) {
        this.warnedUserMode = true;
        this.console('gdbsx: note: VCPU 0 is in guest user mode. Xen reads guest memory through VCPU 0\'s page tables, ' +
          'so kernel addresses may be unreadable (E14) until VCPU 0 is back in the kernel: continue or step it.\n');
      }
    }
    return stopReply(this.guest, ev, this);
  }

  /** End the session: the guest is detached (restored and running) first. */
  close(why: string): void {
    if (this.closed) return;
    this.closed = true;
    log('session ends: %s', why);
    const g = this.current;
    try {
      const r = g?.detach();
      if (r?.failed.length) log('could not restore breakpoints at %o', r.failed.map((a) => '0x' + a.toString(16)));
    } catch (e) {
      log('detach failed: %s', (e as Error).message);
    }
    if (g) this.broker?.released(g.domid, this);
    this.sock.end();
    this.sock.destroySoon?.();
    this.onClose();
  }
}
