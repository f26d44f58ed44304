// On Debian's stock hypervisor (built without CONFIG_GDBSX) the stub must refuse with
// a clear message and a non-zero exit, and leave the guest running.
// Runs in a lab started with LAB_XEN=stock (.ci/run does that after the main suite).
import assert from 'assert';
import { readState, labExec, guest, xlStateOf } from '../lab/client';

describe('real Xen: a hypervisor without CONFIG_GDBSX', function () {
  this.timeout(300000);

  it('the stub says plainly that gdbsx is missing and how to get it', async function () {
    const st = readState();
    if (st.status !== 'ready' || st.xen !== 'stock') this.skip();
    const name = Object.keys(st.guests)[0];
    const g = guest(name);
    const r = await labExec(`cd /opt/gdbsx && node bin/gdbsx -a ${g.domid} ${g.width} 27109`, { timeoutMs: 120000 });
    assert.strictEqual(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /^gdbsx: this hypervisor was built without CONFIG_GDBSX.*CONFIG_GDBSX=y/m);
    assert.doesNotMatch(await xlStateOf(g.xlName), /p/, 'guest left running');
    // The context dump fails the same way.
    const c = await labExec(`cd /opt/gdbsx && node bin/gdbsx -c ${g.domid}`, { timeoutMs: 120000 });
    assert.strictEqual(c.code, 1);
    assert.match(c.stderr, /CONFIG_GDBSX/);
  });
});
