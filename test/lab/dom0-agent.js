#!/usr/bin/env node
// The lab's control agent: runs in dom0 (started by test/lab/dom0/init), listens on a
// TCP port that QEMU forwards from 127.0.0.1 on the host, and runs what it is asked.
//
// Protocol: one request per line, one reply per line, both JSON (several requests may
// share a connection; they are answered in order). A line that is not JSON is taken
// as {"op":"exec","cmd":<the line>}.
//
//   {"op":"ping"}                                   -> {"ok":true,"uptime":s,"pid":n}
//   {"op":"exec","cmd":"xl list","timeoutMs":60000,"env":{}}
//        -> {"ok":true,"code":0,"signal":null,"stdout":"...","stderr":"...","ms":12,"timedOut":false}
//   {"op":"spawn","cmd":"...","log":"/var/log/x.log","env":{}}   (detached, output to log)
//        -> {"ok":true,"pid":n,"log":"/var/log/x.log"}
//   {"op":"kill","pid":n,"signal":"SIGTERM"}        -> {"ok":true,"alive":false}  (whole process group)
//   {"op":"put","path":"/tmp/f","data":"<base64>","mode":493}  -> {"ok":true,"bytes":n}
//   {"op":"get","path":"/tmp/f"}                    -> {"ok":true,"data":"<base64>"}
//   {"op":"wait","file":"/var/log/x","contains":"READY","timeoutMs":60000}
//   {"op":"wait","listen":9001,"pid":n,"timeoutMs":60000}   (gives up early if pid dies)
//        -> {"ok":true,"met":true|false,"ms":n,"pidAlive":bool}   (polled in-process: no fork)
// Errors: {"ok":false,"error":"..."}. Commands run with /bin/sh -c.
'use strict';
const net = require('net');
const fs = require('fs');
const { spawn } = require('child_process');

const args = process.argv.slice(2);
let port = 7000;
let host = '0.0.0.0'; // in dom0: QEMU's forward arrives from 10.0.2.2
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--port') port = Number(args[++i]);
  else if (args[i] === '--host') host = args[++i];
}
const PATH = '/usr/lib/xen-4.17/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const MAX_OUTPUT = 64 * 1024 * 1024;

function envFor(extra) {
  return { ...process.env, PATH, HOME: '/root', ...(extra || {}) };
}

function doExec(req) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn('/bin/sh', ['-c', String(req.cmd)], {
      cwd: req.cwd || '/', env: envFor(req.env), stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    const out = [], err = [];
    let outLen = 0, errLen = 0, timedOut = false;
    child.stdout.on('data', (d) => { if (outLen < MAX_OUTPUT) { out.push(d); outLen += d.length; } });
    child.stderr.on('data', (d) => { if (errLen < MAX_OUTPUT) { err.push(d); errLen += d.length; } });
    const timeoutMs = req.timeoutMs === undefined ? 120000 : Number(req.timeoutMs);
    const timer = timeoutMs > 0 ? setTimeout(() => {
      timedOut = true;
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
    }, timeoutMs) : null;
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      resolve({ ok: false, error: String(e) });
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({
        ok: true, code, signal, timedOut, ms: Date.now() - t0,
        stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}

function doSpawn(req) {
  const log = req.log || `/var/log/spawn-${Date.now()}.log`;
  const fd = fs.openSync(log, 'a');
  const child = spawn('/bin/sh', ['-c', String(req.cmd)], {
    cwd: req.cwd || '/', env: envFor(req.env), stdio: ['ignore', fd, fd], detached: true,
  });
  fs.closeSync(fd);
  child.unref();
  return { ok: true, pid: child.pid, log };
}

function alive(pid) {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

async function doKill(req) {
  const pid = Number(req.pid);
  if (!(pid > 1)) return { ok: false, error: 'bad pid' };
  // spawned commands lead their own process group: signal the whole group
  try { process.kill(-pid, req.signal || 'SIGTERM'); } catch {
    try { process.kill(pid, req.signal || 'SIGTERM'); } catch (e) { return { ok: true, alive: alive(pid), error: String(e) }; }
  }
  for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  return { ok: true, alive: alive(pid) };
}

function listeningOn(port) {
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try { text = fs.readFileSync(f, 'utf8'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length > 3 && cols[3] === '0A' && parseInt(cols[1].split(':').pop(), 16) === port) return true;
    }
  }
  return false;
}

function fileContains(path, needle) {
  try { return fs.readFileSync(path, 'utf8').includes(needle); } catch { return false; }
}

async function doWait(req) {
  const t0 = Date.now();
  const timeoutMs = req.timeoutMs === undefined ? 60000 : Number(req.timeoutMs);
  const pid = req.pid ? Number(req.pid) : 0;
  for (;;) {
    const met = req.listen !== undefined ? listeningOn(Number(req.listen)) : fileContains(req.file, String(req.contains));
    const pidAlive = pid ? alive(pid) : undefined;
    if (met || (pid && !pidAlive) || Date.now() - t0 >= timeoutMs) return { ok: true, met, ms: Date.now() - t0, pidAlive };
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function handle(req) {
  switch (req.op) {
    case 'ping': return { ok: true, uptime: Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]), pid: process.pid };
    case 'exec': return doExec(req);
    case 'spawn': return doSpawn(req);
    case 'kill': return doKill(req);
    case 'wait': return doWait(req);
    case 'put':
      fs.writeFileSync(req.path, Buffer.from(req.data || '', 'base64'), { mode: req.mode === undefined ? 0o644 : req.mode });
      if (req.mode !== undefined) fs.chmodSync(req.path, req.mode);
      return { ok: true, bytes: fs.statSync(req.path).size };
    case 'get': return { ok: true, data: fs.readFileSync(req.path).toString('base64') };
    default: return { ok: false, error: `unknown op ${req.op}` };
  }
}

const server = net.createServer((sock) => {
  let buf = '';
  let chain = Promise.resolve();
  sock.setEncoding('utf8');
  sock.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      if (!line.trim()) continue;
      let req;
      try {
        req = line.trimStart().startsWith('{') ? JSON.parse(line) : { op: 'exec', cmd: line };
      } catch (e) {
        req = { op: 'bad', error: String(e) };
      }
      chain = chain.then(async () => {
        let res;
        try {
          res = req.op === 'bad' ? { ok: false, error: req.error } : await handle(req);
        } catch (e) {
          res = { ok: false, error: String(e && e.message ? e.message : e) };
        }
        if (req.id !== undefined) res.id = req.id;
        if (!sock.destroyed) sock.write(JSON.stringify(res) + '\n');
      });
    }
  });
  sock.on('error', () => { /* client went away */ });
});
server.listen(port, host, () => {
  console.log(`dom0-agent listening on ${server.address().port}`);
});
