#!/usr/bin/env node
// Print, one per line, the node_modules package folders the project needs at run time:
// the closure of package.json's "dependencies", resolved the way Node does (nearest
// node_modules first), minus build-time-only packages named with --exclude.
'use strict';
const fs = require('fs');
const path = require('path');

const args = process.argv.slice(2);
const root = path.resolve(args[0] || '.');
const exclude = new Set();
for (let i = 1; i < args.length; i++) {
  if (args[i] === '--exclude') args[++i].split(/[\s,]+/).filter(Boolean).forEach((n) => exclude.add(n));
}

function resolveFrom(dir, name) {
  for (let d = dir; ; d = path.dirname(d)) {
    const cand = path.join(d, 'node_modules', name);
    if (fs.existsSync(path.join(cand, 'package.json'))) return cand;
    if (d === root || path.dirname(d) === d) return null;
  }
}

const seen = new Set();
function visit(dir, optional) {
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const deps = { ...(pkg.dependencies || {}), ...(pkg.optionalDependencies || {}) };
  for (const name of Object.keys(deps)) {
    if (exclude.has(name)) continue;
    const found = resolveFrom(dir, name);
    if (!found) {
      if (!(pkg.optionalDependencies && name in pkg.optionalDependencies)) {
        process.stderr.write(`runtime-deps: ${name} (needed by ${pkg.name || dir}) not installed\n`);
      }
      continue;
    }
    if (seen.has(found)) continue;
    seen.add(found);
    visit(found, optional);
  }
}
visit(root, false);
for (const d of [...seen].sort()) console.log(path.relative(root, d));
