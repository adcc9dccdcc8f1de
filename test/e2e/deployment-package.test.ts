/**
 * The deployment package holds only what runs in Azure. The package is computed the way azd
 * computes it (the project tree filtered by .funcignore with a gitignore library, see
 * test/support/deployment-package.ts), with a fresh `tsc -p tsconfig.build.json` build standing in
 * for `dist`, so a stale or missing local build changes nothing.
 */
import { spawnSync } from 'node:child_process';
import { builtinModules } from 'node:module';
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  packageFiles,
  packageNameOf,
  readFuncignore,
  requiredSpecifiers,
  type PackageFile,
} from '../support/deployment-package';

const root = path.join(__dirname, '..', '..');
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  main: string;
  bin?: Record<string, string>;
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
};

/** The only places a packaged file may live. */
const ALLOWED = [
  /^host\.json$/,
  /^package\.json$/,
  /^package-lock\.json$/,
  /^dist\/src\/(functions|lib)\/.+\.js$/,
];

let tmp: string;
let files: PackageFile[];
const paths = () => files.map((f) => f.path);

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'syncbridge-package-'));
  const tsc = require.resolve('typescript/bin/tsc');
  const build = spawnSync(
    process.execPath,
    [tsc, '-p', path.join(root, 'tsconfig.build.json'), '--outDir', path.join(tmp, 'dist')],
    { encoding: 'utf8', cwd: root },
  );
  if (build.status !== 0) throw new Error(`tsc failed:\n${build.stdout}${build.stderr}`);
  files = packageFiles(root, { dist: path.join(tmp, 'dist') });
}, 120_000);

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const globToRegExp = (glob: string) =>
  new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}$`);

describe('the deployment package (.funcignore)', () => {
  it('contains host.json, package.json, package-lock.json and the compiled functions and lib, nothing else', () => {
    const stray = paths().filter((p) => !ALLOWED.some((re) => re.test(p)));
    expect(stray).toEqual([]);
    for (const required of ['host.json', 'package.json', 'package-lock.json'])
      expect(paths()).toContain(required);
    // Every compiled module of src/functions and src/lib is in it (nothing the app loads is missing).
    const compiled = readdirSync(path.join(tmp, 'dist', 'src'), { recursive: true, encoding: 'utf8' })
      .map((p) => `dist/src/${p.split(path.sep).join('/')}`)
      .filter((p) => /^dist\/src\/(functions|lib)\/.+\.js$/.test(p));
    expect(compiled.length).toBeGreaterThan(10);
    expect(compiled.filter((p) => !paths().includes(p))).toEqual([]);
  });

  it("keeps the worker's entry point: package.json main matches the compiled functions", () => {
    const main = globToRegExp(pkg.main);
    const entries = paths().filter((p) => main.test(p));
    expect(entries.length).toBeGreaterThan(3);
    expect(entries.every((p) => p.startsWith('dist/src/functions/'))).toBe(true);
  });

  it('leaves out the local host and simulators, the CLI, benchmarks, scripts, tests, sources, maps and node_modules', () => {
    const leaked = paths().filter((p) =>
      /^(dist\/src\/local\/|dist\/bench\/|dist\/scripts\/|dist\/src\/cli\.js|src\/|test\/|bench\/|scripts\/|infra\/|node_modules\/)|\.map$|\.ts$/.test(
        p,
      ),
    );
    expect(leaked).toEqual([]);
    const ig = readFuncignore(root);
    for (const p of [
      'node_modules/',
      'dist/src/local/',
      'dist/src/local/start.js',
      'local.settings.json',
      '.git/',
    ])
      expect(ig.ignores(p), p).toBe(true);
  });

  it('is self-contained: every require resolves inside the package or to a production dependency', () => {
    const kept = new Set(paths());
    const builtins = new Set(builtinModules);
    const problems: string[] = [];
    for (const f of files.filter((x) => x.path.endsWith('.js'))) {
      for (const spec of requiredSpecifiers(readFileSync(f.source, 'utf8'))) {
        if (spec.startsWith('.')) {
          const target = path.posix.normalize(path.posix.join(path.posix.dirname(f.path), spec));
          const candidates = [target, `${target}.js`, `${target}/index.js`];
          if (!candidates.some((c) => kept.has(c)))
            problems.push(`${f.path} requires ${spec}: not in the package`);
        } else if (!spec.startsWith('node:') && !builtins.has(spec)) {
          const name = packageNameOf(spec);
          if (!(name in pkg.dependencies))
            problems.push(`${f.path} requires ${name}: not a production dependency (remote build omits it)`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('reports its size (the compiled app; the remote build installs node_modules)', () => {
    const bytes = files.reduce((n, f) => n + f.bytes, 0);
    console.log(`deployment package: ${files.length} files, ${(bytes / 1024).toFixed(1)} KiB`);
    // A regression guard, not a benchmark: the compiled app is a few hundred KiB; 85 MB was
    // node_modules with the dev dependencies.
    expect(bytes).toBeLessThan(2 * 1024 * 1024);
  });

  it('the computation can fail: a .funcignore that misses dist/src/local ships the local host', () => {
    const fake = mkdtempSync(path.join(os.tmpdir(), 'syncbridge-funcignore-'));
    try {
      const text = readFileSync(path.join(root, '.funcignore'), 'utf8').replace(/^\/dist\/src\/local$/m, '');
      writeFileSync(path.join(fake, '.funcignore'), text);
      for (const f of ['host.json', 'package.json']) cpSync(path.join(root, f), path.join(fake, f));
      mkdirSync(path.join(fake, 'dist', 'src', 'local'), { recursive: true });
      writeFileSync(path.join(fake, 'dist', 'src', 'local', 'start.js'), '');
      mkdirSync(path.join(fake, 'node_modules', 'x'), { recursive: true });
      writeFileSync(path.join(fake, 'node_modules', 'x', 'index.js'), '');
      const got = packageFiles(fake).map((f) => f.path);
      expect(got).toContain('dist/src/local/start.js');
      expect(got).not.toContain('node_modules/x/index.js');
    } finally {
      rmSync(fake, { recursive: true, force: true });
    }
  });
});

describe('azure.yaml', () => {
  const yaml = readFileSync(path.join(root, 'azure.yaml'), 'utf8');

  it('asks for a remote build of the `api` function service (azd requires .funcignore to exclude node_modules)', () => {
    expect(yaml).toMatch(/^services:\s*\n\s+api:\s*\n(\s+[\w]+:.*\n|\s+#.*\n)*\s+remoteBuild:\s*true\s*$/m);
    expect(readFuncignore(root).ignores('node_modules/')).toBe(true);
  });
});

describe('the remote build (Oryx: `npm install`, then `npm run build` and `npm run build:azure` when present)', () => {
  /**
   * The package has no sources and no tsconfig (remote build compiles nothing: dist/ ships
   * built), so `build` does nothing when tsconfig.build.json is absent; a `build` that always ran
   * tsc would fail the deployment on the build server.
   */
  it('runs the package.json build scripts successfully inside the package', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'syncbridge-remote-build-'));
    try {
      for (const f of files) {
        mkdirSync(path.dirname(path.join(dir, f.path)), { recursive: true });
        cpSync(f.source, path.join(dir, f.path));
      }
      // Oryx's `npm install` installs every dependency (dev ones too): link ours instead.
      symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
      for (const script of ['build', 'build:azure'].filter((s) => s in pkg.scripts)) {
        const run = spawnSync('npm', ['run', script], { cwd: dir, encoding: 'utf8' });
        expect(run.status, `npm run ${script}:\n${run.stdout}${run.stderr}`).toBe(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
