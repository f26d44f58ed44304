// What the lab's transport costs by itself, and what the stub does without gdb:
//  - the floor of any round trip: a 1-byte TCP echo served in dom0, through the same
//    QEMU port forward the stubs are reached by (and its bulk throughput);
//  - raw RSP against our stub (no gdb): `m` round trips and bulk reads, so gdb's own
//    share of a figure shows.
import type { LabClient } from '../test/lab/client';
import { RspClient } from '../test/support/rspClient';

/** A dom0 TCP server: echoes each chunk, answers 'b' with 1 MiB; exits when its client leaves. */
const ECHO_JS = `
const net = require('net');
const big = Buffer.alloc(1 << 20, 0x61);
const srv = net.createServer((s) => {
  s.setNoDelay(true);
  s.on('data', (d) => s.write(d[0] === 0x62 ? big : d));
  s.on('close', () => process.exit(0));
  s.on('error', () => process.exit(0));
});
srv.listen(+process.argv[2], '0.0.0.0');
setTimeout(() => process.exit(0), +process.argv[3]);
`;

export interface TransportFloor {
  /** 1-byte echo round trips, ms. */
  echoMs: number[];
  /** 1 MiB sent by dom0 to the host, MiB/s per transfer. */
  mibPerS: number[];
}

/** The forward's own round trip and throughput, from a throwaway echo server in dom0 on `port`. */
export async function transportFloor(agent: LabClient, port: number, runs: number): Promise<TransportFloor> {
  const file = '/tmp/gdbsx-bench-echo.js';
  await agent.put(file, ECHO_JS);
  // Not awaited: the server exits when our connection closes (or after 60 s at most).
  void agent.exec(`node ${file} ${port} 60000`, { timeoutMs: 70000 }).catch(() => undefined);
  // QEMU's forward accepts a connection before anything listens in dom0 (then drops
  // it): a connection counts once it has echoed.
  let c: RspClient | undefined;
  for (const end = Date.now() + 30000; !c; ) {
    const t = await RspClient.connect(port, { retryMs: 5000 });
    try {
      await t.exchange('x', (_a, n) => n >= 1, 2000);
      c = t;
    } catch (e) {
      t.close();
      if (Date.now() > end) throw new Error(`no echo from dom0 on port ${port}: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    const echoMs: number[] = [];
    const mibPerS: number[] = [];
    for (let i = 0; i < runs * 10; i++) echoMs.push(await c.exchange('x', (_a, n) => n >= 1));
    await c.exchange('b', (_a, n) => n >= 1 << 20);
    for (let i = 0; i < Math.max(3, runs >> 1); i++) mibPerS.push(1000 / (await c.exchange('b', (_a, n) => n >= 1 << 20)));
    return { echoMs, mibPerS };
  } finally {
    c.close();
  }
}

export interface RawRsp {
  /** `qC` round trips, ms. */
  qcMs: number[];
  /** `m addr,1` round trips, ms (the stub's line cache serves all but the first). */
  m1Ms: number[];
  /** Reads of `bytes` in `chunk`-byte `m` packets, MiB/s per read. */
  readMiBps: number[];
  chunk: number;
}

/**
 * Our stub spoken to directly (no gdb): the same `m` requests gdb makes for a dump,
 * so the difference to gdb's figure is gdb's own work. Connecting attaches (pauses)
 * the guest; closing detaches it.
 */
export async function rawRsp(port: number, addr: bigint, bytes: number, runs: number, readRuns: number): Promise<RawRsp> {
  const c = await RspClient.connect(port, { retryMs: 10000 });
  const req = (p: string) => c.timed(p);
  try {
    await req('QStartNoAckMode');
    c.writeRaw('+'); // ack the OK; from here on no acks
    c.noAck = true;
    await req('qSupported:multiprocess+;swbreak+;hwbreak+');
    const sup = await c.readPacket(); // run-length decoded: PacketSize=40*! is 400000
    const size = /PacketSize=([0-9a-f]+)/.exec(sup);
    const chunk = Math.min(bytes, size ? Math.floor(parseInt(size[1], 16) / 2) : 4096);
    await req('?');
    const qcMs: number[] = [];
    const m1Ms: number[] = [];
    for (let i = 0; i < runs * 5; i++) qcMs.push(await req('qC'));
    for (let i = 0; i < runs * 5; i++) m1Ms.push(await req(`m${addr.toString(16)},1`));
    // Check once that a chunk decodes to what was asked for (the timed loop only frames).
    await req(`m${addr.toString(16)},${chunk.toString(16)}`);
    const hex = await c.readPacket(); // checks the checksum too
    if (hex.length !== 2 * chunk) throw new Error(`raw read: asked for ${chunk} bytes, got ${hex.length / 2} (${hex.slice(0, 8)})`);
    const readMiBps: number[] = [];
    for (let r = 0; r < readRuns; r++) {
      let ms = 0;
      for (let off = 0; off < bytes; off += chunk) {
        ms += await req(`m${(addr + BigInt(off)).toString(16)},${Math.min(chunk, bytes - off).toString(16)}`);
      }
      readMiBps.push(bytes / (1 << 20) / (ms / 1000));
    }
    await req('D');
    return { qcMs, m1Ms, readMiBps, chunk };
  } finally {
    c.close();
  }
}
