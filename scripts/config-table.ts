/**
 * Generates the README's configuration table from `settings` in src/lib/config/settings.ts, the single
 * source of truth for setting names, defaults and descriptions.
 *
 * Print it (tsc is a dev dependency; dist/ is git-ignored):
 *
 *   npx tsc scripts/config-table.ts --outDir dist/tools --rootDir . --module node16 \
 *     --moduleResolution node16 --target es2022 --esModuleInterop --skipLibCheck \
 *     && node dist/tools/scripts/config-table.js
 *
 * Add `--write` to the node command to rewrite the block between the markers in
 * docs/config-table.md and in README.md (when README.md has the markers).
 *
 * test/settings-consistency.test.ts fails when README.md or docs/config-table.md is stale.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { flowSettings, settings, type SettingDefinition } from '../src/lib/config';

export const TABLE_START = '<!-- config-table:start -->';
export const TABLE_END = '<!-- config-table:end -->';

/** Markdown-safe table cell: no line breaks, pipes escaped. */
function cell(text: string): string {
  return text.replace(/\r?\n/g, ' ').replace(/\|/g, '\\|');
}

function defaultCell(s: SettingDefinition): string {
  if (s.default === undefined) return '—';
  if (s.default === '') return '(empty)';
  return `\`${cell(s.default)}\``;
}

/** The configuration table (header, separator and one row per setting), ending with a newline. */
export function configTableMarkdown(): string {
  const rows = (settings as readonly SettingDefinition[]).map((s) => {
    const name = `\`${s.name}\`${s.secret ? ' (secret)' : ''}`;
    const required = s.required ? 'yes' : 'no';
    return `| ${name} | ${defaultCell(s)} | ${required} | ${cell(s.description)} |`;
  });
  const flowRows = flowSettings.map((d) => {
    const name = `\`Flows__<flow>__${d.key}\`${'secret' in d && d.secret ? ' (secret)' : ''}`;
    const fallback = 'shared' in d && d.shared ? `\`${d.shared}\`` : '—';
    return `| ${name} | ${fallback} | ${cell(d.description)} |`;
  });
  return [
    '| Setting | Default | Required | Description |',
    '| --- | --- | --- | --- |',
    ...rows,
    '',
    'Per flow (several views in one app): each key falls back to the shared setting named.',
    '',
    '| Setting | Falls back to | Description |',
    '| --- | --- | --- |',
    ...flowRows,
    '',
  ].join('\n');
}

/** The marked block as it appears in README.md and docs/config-table.md. */
export function configTableBlock(): string {
  return `${TABLE_START}\n${configTableMarkdown()}${TABLE_END}`;
}

/**
 * The text between the markers (exclusive, without the newline after the start marker), or
 * undefined when the document has no complete pair of markers.
 */
export function extractConfigTable(markdown: string): string | undefined {
  const start = markdown.indexOf(TABLE_START);
  const end = markdown.indexOf(TABLE_END, start + TABLE_START.length);
  if (start < 0 || end < 0) return undefined;
  return markdown.slice(start + TABLE_START.length, end).replace(/^\r?\n/, '');
}

/** Replaces the marked block of `markdown` with the current table; undefined without markers. */
export function replaceConfigTable(markdown: string): string | undefined {
  const start = markdown.indexOf(TABLE_START);
  const end = markdown.indexOf(TABLE_END, start + TABLE_START.length);
  if (start < 0 || end < 0) return undefined;
  return markdown.slice(0, start) + configTableBlock() + markdown.slice(end + TABLE_END.length);
}

/** docs/config-table.md: the Configuration section, ready to paste into README.md. */
export function configDocMarkdown(): string {
  return [
    '## Configuration',
    '',
    'Generated from `settings` in `src/lib/config/settings.ts` (and the per-flow keys of `flow-settings.ts`); do not edit between the markers by hand.',
    '',
    configTableBlock(),
    '',
  ].join('\n');
}

function main(argv: string[]): void {
  if (!argv.includes('--write')) {
    process.stdout.write(configTableMarkdown());
    return;
  }
  const root = process.cwd();
  writeFileSync(path.join(root, 'docs', 'config-table.md'), configDocMarkdown());
  console.log('wrote docs/config-table.md');
  const readme = path.join(root, 'README.md');
  if (existsSync(readme)) {
    const updated = replaceConfigTable(readFileSync(readme, 'utf8'));
    if (updated === undefined)
      console.log(`README.md has no ${TABLE_START} ... ${TABLE_END} markers; left as is`);
    else {
      writeFileSync(readme, updated);
      console.log('updated README.md');
    }
  }
}

// Run directly (any runner: a bundle, tsc output or a TypeScript loader), not when imported.
if (/config-table\.(ts|js|cjs|mjs)$/.test(process.argv[1] ?? '')) main(process.argv.slice(2));
