// Polling for the client's next packet after a reply (src/gx/replyPoll.ts): the stub
// keeps its event loop polling for the window after each reply while its client answers
// within it, stops for a client that does not, and never polls with a window of 0 or
// with one CPU to run on.
import assert from 'assert';
import { startStub, Stub, sleep } from './harness';
import { RspClient } from '../support/rspClient';
import { defaultPollUs, DEFAULT_POLL_US, loopPolling, ReplyPoll } from '../../src/gx/replyPoll';

/** Wait until no poll window is open (one left from an earlier case ends within its window). */
async function quiet(): Promise<void> {
  for (let i = 0; i < 100 && loopPolling(); i++) await sleep(10);
  assert.strictEqual(loopPolling(), false, 'the loop still polls a second later');
}

describe('polling for the next packet after a reply', function () {
  this.timeout(20000);
  let stub: Stub | undefined;
  let c: RspClient | undefined;

  afterEach(async () => {
    c?.close();
    await stub?.close();
    c = undefined;
    stub = undefined;
  });

  it('polls for the window after each reply, then stops', async () => {
    // A wide window: the check below runs within it even on a loaded machine.
    stub = await startStub({ pollUs: 200_000 });
    c = await RspClient.session(stub.port);
    await quiet();
    assert.match(await c.request('qC'), /^QC/);
    assert.strictEqual(loopPolling(), true, 'polling right after the reply');
    await sleep(400);
    assert.strictEqual(loopPolling(), false, 'still polling past the window');
  });

  it('stops for a client that answers slower than the window, and starts again when it speeds up', async () => {
    stub = await startStub({ pollUs: 20_000 });
    c = await RspClient.session(stub.port);
    // Two answers, each 100 ms after the reply before: five windows late.
    for (let i = 0; i < 2; i++) {
      await sleep(100);
      assert.match(await c.request('qC'), /^QC/);
    }
    assert.strictEqual(loopPolling(), false, 'polling for a client that took 100 ms twice');
    // An answer at once: worth polling again.
    assert.match(await c.request('qC'), /^QC/);
    assert.strictEqual(loopPolling(), true, 'not polling for a client that answered at once');
  });

  it('never polls with a window of 0', async () => {
    stub = await startStub({ pollUs: 0 });
    c = await RspClient.session(stub.port);
    await quiet();
    for (let i = 0; i < 5; i++) {
      assert.match(await c.request('qC'), /^QC/);
      assert.strictEqual(loopPolling(), false);
    }
  });

  it('is off by default with one CPU, on with more', () => {
    assert.strictEqual(defaultPollUs(1), 0);
    assert.strictEqual(defaultPollUs(2), DEFAULT_POLL_US);
    assert.throws(() => new ReplyPoll(0), RangeError);
    assert.throws(() => new ReplyPoll(NaN), RangeError);
  });

  it('judges a client by its last two answers (one long pause does not stop it)', () => {
    let t = 0;
    const p = new ReplyPoll(1000, () => t); // 1 ms window, on a clock of our own
    const answer = (ms: number) => {
      p.sent();
      t += ms;
      p.received();
    };
    assert.strictEqual(p.worthIt, true, 'no answers yet: worth trying');
    answer(0.2);
    answer(5000); // the user at gdb's prompt
    assert.strictEqual(p.worthIt, true, 'one long pause after a fast answer');
    answer(3);
    assert.strictEqual(p.worthIt, false, 'two answers past the window');
    answer(0.5);
    assert.strictEqual(p.worthIt, true, 'a fast answer again');
    // Bytes with no reply of ours before them (an interrupt, a queued packet) are not an answer.
    t += 100;
    p.received();
    assert.strictEqual(p.worthIt, true);
  });
});
