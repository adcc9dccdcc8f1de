/**
 * A roster view simulator for the external-source flow: a Flowfinity-shaped REST view on
 * loopback that answers, for `?reference=<ref>` (the view parameter), the records of the people
 * who should be allocated to that external source. HTTP Basic auth and `onbehalfof` as a real
 * view. Used by `npm start` and the tests; never deployed.
 *
 * Each record: `{RecordID, lastSubmissionId, WiseflowParticipantId, State}`; `remove` keeps the
 * record in State `Deleted` (Flowfinity archives instead of deleting), which the roster skips.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface RosterSimulatorOptions {
  port?: number;
  username?: string;
  password?: string;
  /** The reference view parameter; default `reference`. */
  referenceParam?: string;
  /** The participant id field; default `WiseflowParticipantId`. */
  participantField?: string;
}

interface RosterRow {
  recordId: string;
  version: number;
  participantId: string;
  state: 'Active' | 'Deleted';
}

export class RosterSimulator {
  readonly username: string;
  readonly password: string;
  readonly viewUrl: string;
  /** Queries answered, by reference. */
  readonly queries = new Map<string, number>();
  private readonly rows = new Map<string, RosterRow[]>();
  private readonly sockets = new Set<Socket>();
  private nextVersion = 1;
  private nextRecord = 1;

  private constructor(
    private readonly server: Server,
    private readonly o: RosterSimulatorOptions,
    port: number,
  ) {
    this.username = o.username ?? 'integration';
    this.password = o.password ?? 'local-dev-password';
    this.viewUrl = `http://127.0.0.1:${port}/api/views/WiseflowRoster`;
  }

  static async start(o: RosterSimulatorOptions = {}): Promise<RosterSimulator> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port ?? 0, '127.0.0.1', () => resolve());
    });
    const sim = new RosterSimulator(server, o, (server.address() as AddressInfo).port);
    server.on('connection', (s) => {
      sim.sockets.add(s);
      s.on('close', () => sim.sockets.delete(s));
    });
    server.on('request', (req, res) => {
      const url = new URL(req.url ?? '/', 'http://roster');
      const expected = `Basic ${Buffer.from(`${sim.username}:${sim.password}`).toString('base64')}`;
      const answer = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      };
      if (req.headers.authorization !== expected) return answer(401, { Message: 'Authorization failed' });
      if (req.method !== 'GET' || url.pathname !== '/api/views/WiseflowRoster')
        return answer(404, { Message: 'No such view' });
      const reference = url.searchParams.get(o.referenceParam ?? 'reference') ?? '';
      sim.queries.set(reference, (sim.queries.get(reference) ?? 0) + 1);
      const field = o.participantField ?? 'WiseflowParticipantId';
      answer(
        200,
        (sim.rows.get(reference) ?? []).map((r) => ({
          RecordID: r.recordId,
          lastSubmissionId: r.version,
          [field]: r.participantId,
          State: r.state,
        })),
      );
    });
    return sim;
  }

  /** The roster of `reference` becomes exactly these participant ids (others are archived). */
  set(reference: string, participantIds: (number | string)[]): void {
    const rows = this.rows.get(reference) ?? [];
    const wanted = new Set(participantIds.map(String));
    for (const r of rows) {
      const state = wanted.has(r.participantId) ? 'Active' : 'Deleted';
      if (r.state !== state) {
        r.state = state;
        r.version = this.nextVersion++;
      }
    }
    for (const p of wanted)
      if (!rows.some((r) => r.participantId === p))
        rows.push({
          recordId: String(this.nextRecord++).padStart(9, '0'),
          version: this.nextVersion++,
          participantId: p,
          state: 'Active',
        });
    this.rows.set(reference, rows);
  }

  /** Active participant ids of `reference`, ascending. */
  roster(reference: string): number[] {
    return (this.rows.get(reference) ?? [])
      .filter((r) => r.state === 'Active')
      .map((r) => Number(r.participantId))
      .sort((a, b) => a - b);
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
