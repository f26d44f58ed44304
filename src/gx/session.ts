// One gdb connection: framing and acks in, replies out, dispatch to the packet
// handlers, and the all-stop resume cycle (only 0x03 is expected while the guest
// runs; anything else is queued until the stop reply is out). With gdb's multiprocess
// extensions in extended-remote mode a connection may hold several domains (one per
// inferior): each has its own registers, stops and selected thread, and the packets act
// on the current one, the process of the thread gdb last selected (Hg).
import { Socket } from 'net';
import createDebug from 'debug';
import { Framer } from './framer';
import { ProtocolError, closeFrame, errorReply, frame, hexBlocksInto, hexRleInto, rleEncode } from './packet';
import { Guest, ResumePlan, Sig, StopEvent } from '../vcpu/guest';
import { RefusedError } from '../vcpu/runControl';
import { XenError } from '../xg/errors';
import { dispatch } from './handlers';
import { stopReply } from './stopReply';
import { RegView, regView } from './regView';
import type { XsTransport } from '../xs/transport';
import type { DomainBroker } from './broker';
import { resumeTogether } from './allStop';
import { PACKET_SIZE, Framed, Packet, Reply } from './reply';
import type { HandlerContext } from './handlers/context';
import { ReadMemo } from './readMemo';
import type { ReplyPoll } from './replyPoll';


const log = createDebug('gdbsx:gx');
const logPkt = createDebug('gdbsx:packets');

/** What a session keeps for each domain it holds (a process, with multiprocess). */
interface Held {
  readonly guest: Guest;
  /** The registers this client is shown for it (its target description). */
  regs: RegView | undefined;
  /** Its last stop (a fresh attach's stop until it runs). */
  lastStop: StopEvent;
  /** Its thread selected by Hg; undefined: the VCPU of its last stop. */
  gVcpu: number | undefined;
  /** Its notes (what this hypervisor allows) go to gdb's console once, at its first stop. */
  toldNotes: boolean;
  warnedUserMode: boolean;
  /**
   * A stop it made while another domain's was being reported (all-stop reports one):
   * the answer to the next resume that runs it, as gdbserver keeps pending statuses.
   */
  pending: StopEvent | undefined;
}

/** The answer to '?' and the like without a domain. */
const NO_DOMAIN: StopEvent = { kind: 'exited', code: 0, message: '' };

export class Session implements HandlerContext {
  /** The domains under debug, by domain id; none in extended mode before `attach` and after `detach`/`kill`. */
  private readonly held = new Map<number, Held>();
  /** The current process: the domain of gdb's selected thread (Hg), else the last attached or stopped. */
  private cur: Held | undefined;
  /** Domains with a resume in flight (0x03 stops them). */
  private readonly running = new Set<Guest>();
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
  /** Replies to memory reads, sent again while only reads come (readMemo.ts). */
  private readonly readMemo = new ReadMemo();

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
  /** Thread selected by Hc (legacy c/s) in the current process; undefined = "any". */
  cVcpu: number | 'all' | undefined;
  /** Polling for the client's next packet after each reply (replyPoll.ts); unset: off. */
  replyPoll: ReplyPoll | undefined;
  /** How `monitor info` reaches xenstore (the simulated one on the simulated Xen); unset: the real one. */
  xenstore: (() => Promise<XsTransport>) | undefined;
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
    if (guest) this.addGuest(guest);
    sock.setNoDelay(true);
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    sock.on('close', () => this.close('connection closed'));
    sock.on('error', (e) => this.close(`socket error: ${e.message}`));
  }

  /** The current domain; a packet that needs one gets `E.<this message>` without it. */
  get guest(): Guest {
    if (!this.cur) throw new RefusedError('no domain attached: `attach <domid>` first (`info os processes` lists the domains)');
    return this.cur.guest;
  }

  /** The registers this client is shown for the current domain. */
  get regs(): RegView {
    const h = this.cur;
    if (!h) throw new RefusedError('no domain attached');
    if (!h.regs) h.regs = regView(h.guest);
    return h.regs;
  }

  /** The current domain, if any. */
  get attached(): Guest | undefined {
    return this.cur?.guest;
  }

  /** Every domain held, by domain id. */
  get domains(): Guest[] {
    return [...this.held.values()].map((h) => h.guest).sort((a, b) => a.domid - b.domid);
  }

  /** The domain `domid` if this connection holds it. */
  holding(domid: number): Guest | undefined {
    return this.held.get(domid)?.guest;
  }

  /** Serve `guest` too (stopped, as attach leaves it); it becomes the current domain. */
  addGuest(guest: Guest): void {
    const h: Held = {
      guest, regs: undefined, gVcpu: undefined, toldNotes: false, warnedUserMode: false, pending: undefined,
      lastStop: { kind: 'stopped', vcpu: guest.vcpus()[0] ?? 0, signal: Sig.TRAP },
    };
    this.held.set(guest.domid, h);
    this.cur = h;
    this.cVcpu = undefined;
    this.suffixVcpu = undefined;
  }

  /** Stop serving `domid` (the caller detaches it); another held domain becomes current. */
  dropGuest(domid: number): Guest | undefined {
    const h = this.held.get(domid);
    if (!h) return undefined;
    this.held.delete(domid);
    if (this.cur === h) {
      this.cur = this.held.values().next().value;
      this.cVcpu = undefined;
      this.suffixVcpu = undefined;
    }
    return h.guest;
  }

  /** Make `domid` (held) the current domain: gdb selected a thread of its process. */
  select(domid: number): void {
    const h = this.held.get(domid);
    if (!h) throw new Error(`domain ${domid} is not held by this session`);
    if (h !== this.cur) {
      this.cur = h;
      this.cVcpu = undefined;
      this.suffixVcpu = undefined;
    }
  }

  /** Thread selected by Hg (registers, memory) in the current domain; undefined = "any". */
  get gVcpu(): number | undefined {
    return this.cur?.gVcpu;
  }

  set gVcpu(v: number | undefined) {
    if (this.cur) this.cur.gVcpu = v;
  }

  /** The current domain's last stop, answered again for '?'. */
  get lastStop(): StopEvent {
    return this.cur?.lastStop ?? NO_DOMAIN;
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
    return this.stoppedVcpuOf(this.guest);
  }

  /** The VCPU of `g`'s last stop (its first VCPU if it has none). */
  stoppedVcpuOf(g: Guest): number {
    const ev = this.held.get(g.domid)?.lastStop;
    return ev?.kind === 'stopped' ? ev.vcpu : g.vcpus()[0] ?? 0;
  }

  private onData(chunk: Buffer): void {
    for (const ev of this.framer.push(chunk)) {
      switch (ev.type) {
        case 'interrupt':
          log('interrupt (0x03)');
          // Every domain that runs stops (all-stop); while none runs, the current one's next resume is interrupted.
          if (this.running.size > 0) for (const g of this.running) g.interrupt();
          else this.cur?.guest.interrupt();
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
          this.replyPoll?.received(); // (not at an ack: gdb sends those at once)
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
    const kept = this.readMemo.lookup(pkt.text);
    if (kept) {
      this.send(new Framed(kept));
      return undefined;
    }
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
    if (reply instanceof Framed) this.readMemo.remember(pkt.text, reply);
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
      this.put(reply.bytes);
      return;
    }
    let payload = typeof reply === 'string' ? Buffer.from(reply, 'latin1') : reply;
    if (rle && payload.length > 8) payload = rleEncode(payload);
    const framed = frame(payload);
    if (logPkt.enabled) logPkt('-> %s', payload.length > 200 ? payload.subarray(0, 200).toString('latin1') + '...' : payload.toString('latin1'));
    this.put(framed);
  }

  /** A framed reply onto the wire: kept for a retransmit, and the reply poller told. */
  private put(framed: Buffer): void {
    this.lastSent = framed;
    this.sock.write(framed);
    this.replyPoll?.sent();
  }

  /** Console output to gdb (shown to the user), allowed while a resume or qRcmd is answered. */
  console(text: string): void {
    this.send('O' + Buffer.from(text, 'utf8').toString('hex'));
  }

  /**
   * Run the domains as `plans` says (domains not in it stay stopped) and answer with the
   * first stop; the others are stopped then (all-stop). The stopping thread becomes the
   * selected one, and its domain the current one.
   */
  async resume(plans: ReadonlyMap<Guest, ResumePlan>): Promise<Reply> {
    // A stop a domain made while another's was reported comes first, nothing run.
    for (const [g, plan] of plans) {
      const ev = this.takePending(g, plan);
      if (ev) return this.reportStop(g, ev);
    }
    const torun = [...plans].filter(([, p]) => p.step !== undefined || p.cont.size > 0);
    if (torun.length <= 1) {
      // One domain: its run control alone (an empty plan: its own answer, as with one domain).
      const [g, plan] = torun[0] ?? [this.guest, plans.get(this.guest) ?? { cont: new Set<number>() }];
      this.running.add(g);
      let ev: StopEvent;
      try {
        ev = await g.resume(plan);
      } finally {
        this.running.delete(g);
      }
      return this.reportStop(g, ev);
    }
    for (const [g] of torun) this.running.add(g);
    const { first, others } = await resumeTogether(torun, (g) => this.running.delete(g));
    for (const [g, ev] of others) {
      const h = this.held.get(g.domid);
      if (!h) continue;
      if (ev.kind === 'stopped') g.refreshVcpusAfterStop();
      // Stopped because the first one did: nothing to tell. Anything else is told at its next resume.
      if (!(ev.kind === 'stopped' && ev.signal === Sig.INT && !ev.message)) h.pending = ev;
    }
    return this.reportStop(first.guest, first.ev);
  }

  /** `g`'s pending stop, if the plan runs the VCPU it names and it still stands (a breakpoint gdb removed does not). */
  private takePending(g: Guest, plan: ResumePlan): StopEvent | undefined {
    const h = this.held.get(g.domid);
    const ev = h?.pending;
    if (!h || !ev) return undefined;
    if (ev.kind !== 'stopped') {
      h.pending = undefined;
      return ev;
    }
    if (!plan.cont.has(ev.vcpu) && plan.step !== ev.vcpu) return undefined;
    h.pending = undefined;
    if (ev.swbreak) {
      // Stepping off a reported breakpoint, or one removed since: the VCPU just runs on.
      if (plan.step === ev.vcpu) return undefined;
      try {
        if (!g.bps.has(g.pc(ev.vcpu))) return undefined;
      } catch {
        return undefined;
      }
    }
    return ev;
  }

  /** Answer with `g`'s stop: notes first, then the stop reply; `g` and the stopping thread become current. */
  private reportStop(g: Guest, ev: StopEvent): Reply {
    const h = this.held.get(g.domid);
    if (!h || h.guest !== g) return stopReply(g, ev, this); // detached meanwhile (the connection ended)
    this.cur = h;
    this.cVcpu = undefined;
    if (!h.toldNotes) {
      h.toldNotes = true;
      // The protocol has console output only while a resume (or a monitor command) is answered.
      for (const n of this.serverNotes) this.console(`gdbsx: ${n}\n`);
      for (const n of g.notes) this.console(`gdbsx: note: ${n}\n`);
    }
    for (const m of this.refusalsForGdb.splice(0)) this.console(m);
    if (ev.message) this.console(ev.message);
    h.lastStop = ev;
    if (ev.kind === 'stopped') {
      h.gVcpu = ev.vcpu; // gdb's record_currthread(): the stopping thread is now "general"
      this.suffixVcpu = undefined;
      g.refreshVcpusAfterStop();
      // gdb reads the byte at pc next: fetched while it decodes the reply.
      this.afterReply = () => g.warmAfterStop(ev.vcpu);
      if (g.memioBlindToKernel() && !h.warnedUserMode) {
        h.warnedUserMode = true;
        this.console('gdbsx: note: VCPU 0 is in guest user mode. Xen reads guest memory through VCPU 0\'s page tables, ' +
          'so kernel addresses may be unreadable (E14) until VCPU 0 is back in the kernel: continue or step it.\n');
      }
    }
    const reply = stopReply(g, ev, this);
    // A domain gone (destroyed, shut down) beside others: gdb forgets that process; so does the session.
    if (ev.kind !== 'stopped' && this.held.size > 1) this.release(g.domid, 'domain gone');
    return reply;
  }

  /** Detach `domid` (breakpoints removed, running as before) and stop serving it; the connection stays. */
  release(domid: number, why: string): void {
    const g = this.dropGuest(domid);
    if (!g) return;
    try {
      const r = g.detach();
      if (r.failed.length) log('could not restore breakpoints at %o', r.failed.map((a) => '0x' + a.toString(16)));
    } finally {
      this.broker?.released(g.domid, this);
      this.onNote(`${why}: domain ${g.domid} detached, left running`);
    }
  }

  /** End the session: the guest is detached (restored and running) first. */
  close(why: string): void {
    if (this.closed) return;
    this.closed = true;
    log('session ends: %s', why);
    // Every domain held is detached (restored and running).
    for (const h of [...this.held.values()]) {
      const g = h.guest;
      this.held.delete(g.domid);
      try {
        const r = g.detach();
        if (r.failed.length) log('could not restore breakpoints at %o', r.failed.map((a) => '0x' + a.toString(16)));
      } catch (e) {
        log('detach failed: %s', (e as Error).message);
      }
      this.broker?.released(g.domid, this);
    }
    this.cur = undefined;
    this.sock.end();
    this.sock.destroySoon?.();
    this.onClose();
  }
}
