#!/usr/bin/env node
// Builds the simulated hypervisor's demo guests (guest/demo{64,32}.S) into
// guest/build/demo{64,32}.elf with GNU as/ld, with debug info so gdb shows source
// lines. Skips a target whose output is newer than all its inputs.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const guest = path.resolve(__dirname, '..', 'guest');
const out = path.join(guest, 'build');

const targets = [
  { name: 'demo64', asFlags: ['--64'], ldFlags: ['-m', 'elf_x86_64'] },
  { name: 'demo32', asFlags: ['--32'], ldFlags: ['-m', 'elf_i386'] },
];

function die(msg) {
  console.error(`build-guest: ${msg}`);
  process.exit(1);
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.error) {
    if (r.error.code === 'ENOENT') die(`\`${cmd}\` not found: install GNU binutils (Debian: apt-get install binutils)`);
    die(`${cmd}: ${r.error.message}`);
  }
  if (r.status !== 0) die(`${cmd} ${args.join(' ')} failed (exit ${r.status})`);
}

function mtime(p) {
  try {
    return fs.statSync(p).mtimeMs;
  } catch {
    return undefined;
  }
}

// Fail loudly up front rather than half-way.
for (const tool of ['as', 'ld']) {
  const r = spawnSync(tool, ['--version'], { stdio: 'ignore' });
  if (r.error) die(`\`${tool}\` not found: install GNU binutils (Debian: apt-get install binutils)`);
}

fs.mkdirSync(out, { recursive: true });
for (const t of targets) {
  const src = path.join(guest, `${t.name}.S`);
  const lds = path.join(guest, `${t.name}.ld`);
  const obj = path.join(out, `${t.name}.o`);
  const elf = path.join(out, `${t.name}.elf`);
  const inputs = [src, lds, __filename].map((p) => {
    const m = mtime(p);
    if (m === undefined) die(`missing input ${p}`);
    return m;
  });
  const built = mtime(elf);
  if (built !== undefined && built > Math.max(...inputs)) continue;
  run('as', [...t.asFlags, '-g', '-o', obj, src]);
  run('ld', [...t.ldFlags, '-nostdlib', '-static', '--build-id=none', '-z', 'max-page-size=4096', '-z', 'noexecstack', '-T', lds, '-o', elf, obj]);
  console.log(`build-guest: ${path.relative(process.cwd(), elf)}`);
}
