/**
 * `npx syncbridge` / `node_modules/.bin/syncbridge`: the compiled bin starts with a shebang, so
 * once npm links it (and makes it executable, as npm's bin linking does) it runs without `node`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';

const root = path.join(__dirname, '..', '..');
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  bin: { syncbridge: string };
};
let tmp: string;

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'syncbridge-bin-'));
  const tsc = require.resolve('typescript/bin/tsc');
  const build = spawnSync(
    process.execPath,
    [tsc, '-p', path.join(root, 'tsconfig.build.json'), '--outDir', path.join(tmp, 'dist')],
    { encoding: 'utf8', cwd: root },
  );
  if (build.status !== 0) throw new Error(`tsc failed:\n${build.stdout}${build.stderr}`);
  // The compiled code resolves its dependencies from the repository's node_modules.
  symlinkSync(path.join(root, 'node_modules'), path.join(tmp, 'node_modules'), 'dir');
}, 120_000);

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

it('package.json names the syncbridge bin and the compiled file starts with a shebang', () => {
  expect(pkg.bin.syncbridge).toBe('dist/src/cli.js');
  const compiled = readFileSync(path.join(tmp, pkg.bin.syncbridge), 'utf8');
  expect(compiled.split('\n')[0]).toBe('#!/usr/bin/env node');
});

it.skipIf(process.platform === 'win32')(
  'runs as an executable, the way node_modules/.bin/syncbridge does',
  () => {
    const bin = path.join(tmp, pkg.bin.syncbridge);
    chmodSync(bin, 0o755); // what npm does when it links a package's bin
    const link = path.join(tmp, 'syncbridge');
    symlinkSync(bin, link);
    const out = execFileSync(link, ['--help'], {
      encoding: 'utf8',
      env: { ...process.env, PATH: process.env.PATH },
    });
    expect(out).toMatch(/^usage: syncbridge/);
    const noCommand = spawnSync(link, [], { encoding: 'utf8' });
    expect(noCommand.status).toBe(2);
  },
);
