/**
 * Every target kind, ready for a test: start its environment once per suite, then create as
 * many fresh, empty targets as the tests need. Each target also reads back what it holds
 * (`list()`), so a suite can run unchanged over table, http and postgres:
 *
 *   const env = await startTargetEnvironment('postgres', { azuriteConnectionString });
 *   const target = await env.create();      // TargetSystem & TargetReader & { close() }
 *   ... createServices(config, { target }) ...
 *   await target.close(); await env.stop();
 *
 *   table     TableTarget on the given Azurite, a new table per create()
 *   http      HttpTarget against a new versionChecked records API simulator per create()
 *   postgres  PostgresTarget on one embedded PostgreSQL per environment, a new table per create()
 */
import { randomBytes } from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import pg from 'pg';
import type { StoredTargetRecord, TargetReader, TargetSystem } from '../../src/lib/ports';
import { HttpTarget, type HttpTargetOptions } from '../../src/lib/targets/http-target';
import { PostgresTarget, type PostgresTargetOptions } from '../../src/lib/targets/postgres-target';
import { TableTarget } from '../../src/lib/targets/table-target';
import {
  startRecordsApiSimulator,
  type RecordsApiSimulator,
  type RecordsApiSimulatorOptions,
} from '../../src/local/records-api-simulator';
import { startPostgres, type PostgresInstance } from './postgres';

export type TargetKind = 'table' | 'http' | 'postgres';
export const targetKinds: TargetKind[] = ['table', 'http', 'postgres'];

export interface TestTarget extends TargetSystem, TargetReader {
  readonly kind: TargetKind;
  /** Everything the target holds, tombstones included, read the way its users read it, by key. */
  rows(): Promise<StoredTargetRecord[]>;
  close(): Promise<void>;
}

export interface CreateTargetOptions {
  http?: Partial<HttpTargetOptions>;
  simulator?: RecordsApiSimulatorOptions;
  postgres?: Partial<PostgresTargetOptions>;
}

export interface TargetEnvironment {
  readonly kind: TargetKind;
  create(o?: CreateTargetOptions): Promise<TestTarget>;
  /** The PostgreSQL server (postgres only), for raw SQL in tests. */
  readonly postgres?: PostgresInstance;
  stop(): Promise<void>;
}

const uniq = () => randomBytes(4).toString('hex');
const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

async function collect(reader: TargetReader): Promise<StoredTargetRecord[]> {
  const out: StoredTargetRecord[] = [];
  for await (const r of reader.list()) out.push(r);
  return out.sort(byKey);
}

/** A raw `SELECT` of a target table: what reports and applications read. */
export async function selectTargetRows(
  connectionString: string,
  qualifiedTable: string,
): Promise<StoredTargetRecord[]> {
  const c = new pg.Client({ connectionString });
  await c.connect();
  try {
    const r = await c.query<{ key: string; version: string; deleted: boolean; data: string | null }>(
      `SELECT key, version::text AS version, deleted, data::text AS data FROM ${qualifiedTable}`,
    );
    return r.rows
      .map((row) => ({
        key: row.key,
        version: BigInt(row.version),
        deleted: row.deleted,
        data: (row.data === null ? {} : JSON.parse(row.data)) as Record<string, unknown>,
      }))
      .sort(byKey);
  } finally {
    await c.end();
  }
}

export async function startTargetEnvironment(
  kind: TargetKind,
  o: { azuriteConnectionString?: string } = {},
): Promise<TargetEnvironment> {
  if (kind === 'table') {
    const cs = o.azuriteConnectionString;
    if (!cs) throw new Error('the table target needs azuriteConnectionString');
    return {
      kind,
      async create() {
        const t = new TableTarget(
          TableClient.fromConnectionString(cs, `target${uniq()}`, { allowInsecureConnection: true }),
        );
        await t.ensureReady();
        return Object.assign(t, {
          kind,
          rows: () => collect(t),
          close: async () => {},
        });
      },
      stop: async () => {},
    };
  }

  if (kind === 'http') {
    const sims: RecordsApiSimulator[] = [];
    return {
      kind,
      async create(c = {}) {
        const sim = await startRecordsApiSimulator({ mode: 'versionChecked', ...c.simulator });
        sims.push(sim);
        const target = new HttpTarget({ urlTemplate: sim.urlTemplate, retryBaseDelayMs: 20, ...c.http });
        const rows = async () =>
          sim
            .records()
            .map((r) => ({ key: r.key, version: BigInt(r.version), deleted: r.deleted, data: r.data }));
        return {
          kind,
          simulator: sim,
          apply: (r) => target.apply(r),
          async *list() {
            yield* await rows();
          },
          rows,
          close: async () => {
            await target.close();
            await sim.close();
          },
        } as TestTarget & { simulator: RecordsApiSimulator };
      },
      stop: async () => {
        await Promise.all(sims.map((s) => s.close().catch(() => {})));
      },
    };
  }

  const server = await startPostgres();
  const open = new Set<PostgresTarget>();
  return {
    kind,
    postgres: server,
    async create(c = {}) {
      const t = new PostgresTarget({
        connection: { kind: 'connectionString', connectionString: server.connectionString },
        table: `target_${uniq()}`,
        ...c.postgres,
      });
      open.add(t);
      await t.ensureReady();
      return Object.assign(t, {
        kind,
        rows: () => selectTargetRows(server.connectionString, t.qualifiedTable),
        close: async () => {
          open.delete(t);
          await t.pool.end();
        },
      });
    },
    stop: async () => {
      await Promise.all([...open].map((t) => t.pool.end().catch(() => {})));
      await server.stop();
    },
  };
}
