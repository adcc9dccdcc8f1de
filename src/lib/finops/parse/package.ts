/**
 * F&O data packages: a zip with `Manifest.xml`, `PackageHeader.xml` and one data file per entity.
 *
 *   Manifest.xml       <DataManagementPackageManifest xmlns="http://schemas.microsoft.com/dynamics/2015/01/DataManagement">
 *                        <DefinitionGroupName/> <Description/>
 *                        <PackageEntityList>
 *                          <DataManagementPackageEntityData>
 *                            <EntityName>Customer groups</EntityName> <SourceFormat>CSV-Unicode</SourceFormat>
 *                            [<InputFilePath>…</InputFilePath>] [<Disable>false</Disable>] (and field maps, ignored)
 *   PackageHeader.xml  <DataManagementPackageHeader …><Description/><ManifestType/><PackageType>DefinitionGroup</PackageType><PackageVersion>2</PackageVersion>
 *   Customer groups.csv  (the entity's data file: `<EntityName>.<csv|xml|json|xlsx>`, or the
 *                         InputFilePath's file name when the manifest gives one)
 *
 * Library: yauzl (well-kept, security-minded: it refuses absolute and `..` entry names, checks
 * every entry's inflated size against the central directory, and reads entries in any order).
 * A zip's table of contents (the central directory) is at its END, so a zip cannot be validated
 * while it streams in: the download is spooled to a temporary file (disk, never memory; size
 * already capped by the downloader), the whole central directory is validated, and only then are
 * rows read, entry by entry, as streams. A rejected archive therefore yields nothing:
 * - truncated or not a zip (no end-of-central-directory record);
 * - more entries than `maxEntries`; encrypted entries; compression other than store/deflate;
 * - path traversal, absolute paths, folders, backslashes, duplicate names;
 * - a zip bomb: total uncompressed size above `maxTotalUncompressedBytes`, or an entry larger
 *   than `ratioCheckMinBytes` that inflates more than `maxCompressionRatio` times;
 * - missing or unreadable Manifest.xml / PackageHeader.xml, an entity of the manifest without
 *   its data file, an Excel data file (not supported), and any entry the manifest does not name.
 * What the central directory cannot show is found by a VERIFICATION PASS before the first row:
 * every data entry is inflated once to its end and must give exactly its declared size (yauzl
 * stops an entry that inflates past it) and its CRC-32 (yauzl does not check it): a lying size,
 * a corrupt deflate stream or altered bytes reject the package with nothing yielded, so none of
 * its rows reaches a target. It costs a second inflation of the spooled file; the rows are then
 * read in a second pass.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32 } from 'node:zlib';
import { SaxesParser } from 'saxes';
import * as yauzl from 'yauzl';
import { AppError, PermanentError } from '../../errors';
import { decodeText } from './decode';
import type { ParsedItem } from './types';

export type TextFormat = 'csv' | 'xml' | 'json';

export interface ZipLimits {
  /** Default 200 (FNO_PACKAGE_MAX_ENTRIES). */
  maxEntries: number;
  /** Sum of the entries' uncompressed sizes; default 2 GiB (FNO_PACKAGE_MAX_UNCOMPRESSED_BYTES). */
  maxTotalUncompressedBytes: number;
  /** Largest uncompressed/compressed ratio of one entry; default 200 (FNO_PACKAGE_MAX_RATIO). */
  maxCompressionRatio: number;
  /** The ratio is checked only for entries above this size (small files compress freely); default 1 MiB. */
  ratioCheckMinBytes: number;
  /** Largest Manifest.xml / PackageHeader.xml; default 4 MiB. */
  maxMetadataBytes: number;
}

export const DEFAULT_ZIP_LIMITS: ZipLimits = {
  maxEntries: 200,
  maxTotalUncompressedBytes: 2 * 1024 ** 3,
  maxCompressionRatio: 200,
  ratioCheckMinBytes: 1024 ** 2,
  maxMetadataBytes: 4 * 1024 ** 2,
};

/** The package is refused (or turned out corrupt while reading). Permanent: quarantine it. */
export class PackageRejectedError extends PermanentError {
  constructor(reason: string, file?: string) {
    super(`the data package${file ? ` ${file}` : ''} is rejected: ${reason}`, {
      code: 'package_rejected',
      details: { reason },
    });
    this.name = 'PackageRejectedError';
  }
}

export interface PackageOptions {
  /** The downloaded file's name, for messages. */
  file: string;
  limits: ZipLimits;
  /** Where the zip is spooled; default the OS temp folder (FNO_PACKAGE_TEMP_DIR). */
  tempDir?: string;
  /** Reads one data file's text into rows. */
  parseFile: (
    format: TextFormat,
    text: AsyncIterable<string>,
    entity: string,
    file: string,
  ) => AsyncIterable<ParsedItem>;
}

const MANIFEST = 'manifest.xml';
const HEADER = 'packageheader.xml';
const DM_NAMESPACE_ROOTS = {
  manifest: 'DataManagementPackageManifest',
  header: 'DataManagementPackageHeader',
};

interface ManifestEntity {
  entity: string;
  inputFile?: string;
  disabled: boolean;
}

export async function* packageRows(
  source: AsyncIterable<Uint8Array>,
  o: PackageOptions,
): AsyncGenerator<ParsedItem, void, undefined> {
  const dir = await mkdtemp(path.join(o.tempDir ?? os.tmpdir(), 'fno-package-'));
  let zip: yauzl.ZipFile | undefined;
  try {
    const file = path.join(dir, 'package.zip');
    await pipeline(source, createWriteStream(file, { mode: 0o600 }));
    const reject = (reason: string) => new PackageRejectedError(reason, o.file);
    try {
      zip = await yauzl.openPromise(file, {
        lazyEntries: true,
        autoClose: false,
        decodeStrings: true,
        validateEntrySizes: true,
        strictFileNames: true,
      });
    } catch (e) {
      throw reject(`not a complete zip archive (${messageOf(e)})`);
    }
    const plan = await validate(zip, o.limits, reject);
    // Nothing is yielded before every data entry proved whole (see the module comment).
    for (const step of plan) for await (const _ of checkedBytes(zip, step.entry, reject));
    for (const step of plan) {
      const stream = await openEntry(zip, step.entry, reject);
      yield* o.parseFile(
        step.format,
        decodeText(mapErrors(stream, reject)),
        step.entity,
        step.entry.fileName,
      );
    }
  } finally {
    zip?.close();
    await rm(dir, { recursive: true, force: true });
  }
}

interface Step {
  entry: yauzl.Entry;
  entity: string;
  format: TextFormat;
}

async function validate(
  zip: yauzl.ZipFile,
  limits: ZipLimits,
  reject: (reason: string) => PackageRejectedError,
): Promise<Step[]> {
  if (zip.entryCount > limits.maxEntries)
    throw reject(`${zip.entryCount} entries, more than the ${limits.maxEntries} allowed`);
  const entries = new Map<string, yauzl.Entry>();
  let total = 0;
  try {
    for await (const entry of zip.eachEntry()) {
      const name = entry.fileName;
      const shown = JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}…` : name);
      if (/^[/\\]|^[A-Za-z]:|(^|[/\\])\.\.([/\\]|$)/.test(name))
        throw reject(`entry ${shown} escapes the package (path traversal)`);
      if (name.includes('/') || name.includes('\\'))
        throw reject(`unexpected entry ${shown} (a package has no folders)`);
      if (entries.has(name.toLowerCase())) throw reject(`entry ${shown} appears twice`);
      if (entry.isEncrypted()) throw reject(`entry ${shown} is encrypted`);
      if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8)
        throw reject(
          `entry ${shown} uses compression method ${entry.compressionMethod} (only store and deflate are read)`,
        );
      total += entry.uncompressedSize;
      if (total > limits.maxTotalUncompressedBytes)
        throw reject(`it would inflate to more than ${limits.maxTotalUncompressedBytes} bytes (zip bomb?)`);
      if (
        entry.uncompressedSize > limits.ratioCheckMinBytes &&
        entry.uncompressedSize > limits.maxCompressionRatio * Math.max(1, entry.compressedSize)
      )
        throw reject(
          `entry ${shown} inflates ${Math.round(entry.uncompressedSize / Math.max(1, entry.compressedSize))} times, more than the ${limits.maxCompressionRatio} allowed (zip bomb?)`,
        );
      entries.set(name.toLowerCase(), entry);
    }
  } catch (e) {
    if (e instanceof PackageRejectedError) throw e;
    // yauzl's own refusals: absolute paths, "..", backslashes, a cut central directory.
    throw reject(messageOf(e));
  }

  const manifestEntry = entries.get(MANIFEST);
  const headerEntry = entries.get(HEADER);
  if (!manifestEntry) throw reject('Manifest.xml is missing');
  if (!headerEntry) throw reject('PackageHeader.xml is missing');
  for (const e of [manifestEntry, headerEntry])
    if (e.uncompressedSize > limits.maxMetadataBytes)
      throw reject(`${e.fileName} is larger than ${limits.maxMetadataBytes} bytes`);
  const headerText = await readSmall(zip, headerEntry, reject);
  const headerRoot = rootElementOf(headerText, reject, 'PackageHeader.xml');
  if (headerRoot !== DM_NAMESPACE_ROOTS.header)
    throw reject(`PackageHeader.xml has root element ${headerRoot}, not ${DM_NAMESPACE_ROOTS.header}`);
  const manifest = parseManifest(await readSmall(zip, manifestEntry, reject), reject);

  const claimed = new Set<string>([MANIFEST, HEADER]);
  const steps: Step[] = [];
  for (const m of manifest) {
    if (m.disabled) continue;
    const candidates = m.inputFile
      ? [m.inputFile.split(/[/\\]/).pop()!.toLowerCase()]
      : ['csv', 'xml', 'json', 'xlsx'].map((ext) => `${m.entity}.${ext}`.toLowerCase());
    const found = candidates.filter((c) => entries.has(c) && !claimed.has(c));
    if (found.length === 0)
      throw reject(`the manifest lists entity ${m.entity} but the package has no data file for it`);
    if (found.length > 1)
      throw reject(`entity ${m.entity} has more than one data file (${found.join(', ')})`);
    const key = found[0]!;
    claimed.add(key);
    const entry = entries.get(key)!;
    const ext = key.slice(key.lastIndexOf('.') + 1);
    if (ext === 'xlsx')
      throw reject(`${entry.fileName} is an Excel file; export the data project as CSV, XML or JSON`);
    if (ext !== 'csv' && ext !== 'xml' && ext !== 'json')
      throw reject(`${entry.fileName}: unknown data file type .${ext}`);
    steps.push({ entry, entity: m.entity, format: ext });
  }
  for (const [key, entry] of entries)
    if (!claimed.has(key))
      throw reject(`unexpected entry ${JSON.stringify(entry.fileName)} (not named by the manifest)`);
  return steps;
}

async function openEntry(
  zip: yauzl.ZipFile,
  entry: yauzl.Entry,
  reject: (r: string) => PackageRejectedError,
): Promise<Readable> {
  try {
    return await zip.openReadStreamPromise(entry);
  } catch (e) {
    throw reject(`${entry.fileName} cannot be read (${messageOf(e)})`);
  }
}

async function* mapErrors(
  stream: Readable,
  reject: (r: string) => PackageRejectedError,
): AsyncGenerator<Uint8Array, void, undefined> {
  try {
    for await (const chunk of stream) yield chunk as Uint8Array;
  } catch (e) {
    if (e instanceof AppError) throw e;
    throw reject(`corrupt data (${messageOf(e)})`);
  } finally {
    stream.destroy();
  }
}

/** An entry's bytes; at the end, its CRC-32 must be the one the central directory gives. */
async function* checkedBytes(
  zip: yauzl.ZipFile,
  entry: yauzl.Entry,
  reject: (r: string) => PackageRejectedError,
): AsyncGenerator<Uint8Array, void, undefined> {
  let crc = 0;
  for await (const chunk of mapErrors(await openEntry(zip, entry, reject), reject)) {
    crc = crc32(chunk, crc);
    yield chunk;
  }
  if (crc >>> 0 !== entry.crc32 >>> 0)
    throw reject(`${entry.fileName} does not match its CRC-32 (corrupt or altered)`);
}

async function readSmall(
  zip: yauzl.ZipFile,
  entry: yauzl.Entry,
  reject: (r: string) => PackageRejectedError,
): Promise<string> {
  const parts: string[] = [];
  for await (const text of decodeText(checkedBytes(zip, entry, reject))) parts.push(text);
  return parts.join('');
}

const localName = (qualified: string) => qualified.slice(qualified.indexOf(':') + 1);

function rootElementOf(text: string, reject: (r: string) => PackageRejectedError, file: string): string {
  let root: string | undefined;
  const p = new SaxesParser();
  p.on('doctype', () => {
    throw new Error('a DOCTYPE is not allowed');
  });
  p.on('opentag', (t) => {
    root ??= localName(t.name);
  });
  try {
    p.write(text).close();
  } catch (e) {
    throw reject(`${file} is not well-formed XML (${messageOf(e)})`);
  }
  return root ?? '';
}

/** The entities of Manifest.xml, in the manifest's order. */
export function parseManifest(text: string, reject: (r: string) => PackageRejectedError): ManifestEntity[] {
  const stack: string[] = [];
  const entities: ManifestEntity[] = [];
  let current: Record<string, string> | undefined;
  let textOf = '';
  const p = new SaxesParser();
  p.on('doctype', () => {
    throw new Error('a DOCTYPE is not allowed');
  });
  p.on('opentag', (t) => {
    const name = localName(t.name);
    if (stack.length === 0 && name !== DM_NAMESPACE_ROOTS.manifest)
      throw new Error(`root element is ${name}, not ${DM_NAMESPACE_ROOTS.manifest}`);
    stack.push(name);
    if (stack.join('/').endsWith('PackageEntityList/DataManagementPackageEntityData') && stack.length === 3)
      current = {};
    textOf = '';
  });
  p.on('text', (t) => (textOf += t));
  p.on('closetag', () => {
    const name = stack.pop()!;
    if (current && stack.length === 3) current[name] = textOf.trim();
    if (current && stack.length === 2 && name === 'DataManagementPackageEntityData') {
      const entity = current.EntityName ?? '';
      if (entity === '') throw new Error('an entity of the manifest has no EntityName');
      entities.push({
        entity,
        inputFile: current.InputFilePath ? current.InputFilePath : undefined,
        disabled: (current.Disable ?? '').toLowerCase() === 'true',
      });
      current = undefined;
    }
    textOf = '';
  });
  try {
    p.write(text).close();
  } catch (e) {
    throw reject(`Manifest.xml is not usable (${messageOf(e)})`);
  }
  if (entities.length === 0) throw reject('Manifest.xml lists no entity');
  return entities;
}

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e)).slice(0, 300);
