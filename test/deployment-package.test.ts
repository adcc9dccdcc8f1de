/**
 * The deployment package must contain what the Functions worker loads: host.json, package.json,
 * dist/src/functions/*.js and the production dependencies. .funcignore uses gitignore syntax, in
 * which an unanchored name (`src`) matches at any depth (dist/src, node_modules/x/src).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';

const root = path.join(__dirname, '..');
const patterns = readFileSync(path.join(root, '.funcignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));

it('anchors every .funcignore pattern at the project root', () => {
  expect(patterns.filter((p) => !p.startsWith('/'))).toEqual([]);
});

it('keeps what the worker loads', () => {
  const kept = ['host.json', 'package.json', 'dist', 'node_modules'];
  for (const p of patterns) {
    const re = new RegExp(
      `^${p
        .slice(1)
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '[^/]*')}$`,
    );
    expect(
      kept.filter((k) => re.test(k)),
      `pattern ${p}`,
    ).toEqual([]);
  }
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { main: string };
  expect(pkg.main).toBe('dist/src/functions/*.js');
});
