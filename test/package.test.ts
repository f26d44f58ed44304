// package.json names only files that exist: `main` once pointed at a dist/src/index.js
// that was never built (the package is a command, `bin/gdbsx`, with no library entry).
import { strict as assert } from 'assert';
import fs from 'fs';
import path from 'path';

const ROOT = path.resolve(__dirname, '..', '..');

describe('package.json', () => {
  it('every file it names (main, bin) exists after the build', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { main?: string; bin?: Record<string, string> };
    const files = [...(pkg.main ? [pkg.main] : []), ...Object.values(pkg.bin ?? {})];
    assert.ok(files.length > 0);
    for (const f of files) assert.ok(fs.existsSync(path.join(ROOT, f)), `${f} is named in package.json but does not exist`);
  });
});
