/**
 * What `azd deploy` would upload: the project tree filtered by .funcignore the way azd filters it
 * (azd 1.x `createDeployableZip`: every entry is matched with a gitignore library, an excluded
 * directory is skipped whole, and `.azure`, the ignore file itself and `local.settings.json` are
 * always left out). Used by test/deployment-package.test.ts.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ignore, { type Ignore } from 'ignore';

export interface PackageFile {
  /** Path inside the package, with `/` separators. */
  path: string;
  /** Where the file is on disk. */
  source: string;
  bytes: number;
}

export function readFuncignore(root: string): Ignore {
  return ignore().add(readFileSync(path.join(root, '.funcignore'), 'utf8'));
}

/** azd's own exclusions for a function app, applied before the ignore file. */
function excludedByAzd(name: string, isDir: boolean): boolean {
  if (isDir) return name === '.azure';
  return name === '.funcignore' || name === 'local.settings.json';
}

/**
 * The files of the deployment package. `overrides` maps a top-level directory of the package
 * (e.g. `dist`) to another directory on disk, so a fresh build can stand in for a stale `dist`.
 */
export function packageFiles(root: string, overrides: Record<string, string> = {}): PackageFile[] {
  const ig = readFuncignore(root);
  const files: PackageFile[] = [];
  const walk = (dir: string, rel: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const relPath = rel ? `${rel}/${entry.name}` : entry.name;
      const override = rel === '' ? overrides[entry.name] : undefined;
      const source = override ?? path.join(dir, entry.name);
      const isDir = override !== undefined || entry.isDirectory();
      if (excludedByAzd(entry.name, isDir)) continue;
      if (ig.ignores(isDir ? `${relPath}/` : relPath)) continue;
      if (isDir) walk(source, relPath);
      else if (entry.isFile()) files.push({ path: relPath, source, bytes: statSync(source).size });
    }
  };
  walk(root, '');
  // An override whose directory does not exist in the tree yet (no local build) still counts.
  for (const [name, dir] of Object.entries(overrides)) {
    if (files.some((f) => f.path.startsWith(`${name}/`))) continue;
    if (!ig.ignores(`${name}/`)) walk(dir, name);
  }
  return files.sort((a, b) => a.path.localeCompare(b.path));
}

/** `require("...")` specifiers in a CommonJS file compiled by tsc. */
export function requiredSpecifiers(js: string): string[] {
  return [...js.matchAll(/\brequire\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1]!);
}

/** The npm package a bare specifier names (`@scope/name/sub` → `@scope/name`). */
export function packageNameOf(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}
