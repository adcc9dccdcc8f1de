/**
 * Azurite started by src/local/azurite.ts dies with its parent (even on SIGKILL, which the parent
 * cannot handle), and `location` keeps its state across restarts.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { QueueServiceClient } from '@azure/storage-queue';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { startAzurite } from '../../src/local/azurite';
import { waitFor } from '../support/wait';

const root = path.join(__dirname, '..', '..');

const answers = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('Azurite child process', () => {
  it('stops when its parent is killed with SIGKILL: no orphan keeps the ports', async () => {
    // The parent is a plain node process running the real module (compiled here: it imports only
    // node built-ins and resolves the azurite package from the repository).
    const dir = path.join(root, 'node_modules', '.cache', 'syncbridge-azurite-test');
    mkdirSync(dir, { recursive: true });
    const js = ts.transpileModule(readFileSync(path.join(root, 'src', 'local', 'azurite.ts'), 'utf8'), {
      compilerOptions: {
        module: ts.ModuleKind.CommonJS,
        target: ts.ScriptTarget.ES2022,
        esModuleInterop: true,
      },
    }).outputText;
    writeFileSync(path.join(dir, 'azurite.js'), js);
    const parentScript = `require(${JSON.stringify(path.join(dir, 'azurite.js'))}).startAzurite().then((a) => {
      console.log(JSON.stringify({ pid: a.pid, blobPort: a.blobPort, queuePort: a.queuePort, tablePort: a.tablePort }));
      setInterval(() => {}, 1 << 30);
    });`;
    const parent = spawn(process.execPath, ['-e', parentScript], { stdio: ['ignore', 'pipe', 'inherit'] });
    const info = await new Promise<{ pid: number; blobPort: number; queuePort: number; tablePort: number }>(
      (resolve, reject) => {
        let out = '';
        parent.stdout!.on('data', (c: Buffer) => {
          out += c.toString();
          const line = out.split('\n').find((l) => l.startsWith('{'));
          if (line) resolve(JSON.parse(line));
        });
        parent.once('exit', (code) => reject(new Error(`parent exited with ${code} before Azurite started`)));
      },
    );
    try {
      expect(await answers(info.blobPort)).toBe(true);
      expect(alive(info.pid)).toBe(true);
      parent.kill('SIGKILL');
      await waitFor(async () => !(await answers(info.blobPort)), {
        timeoutMs: 15_000,
        what: 'the Azurite port stops answering',
      });
      for (const port of [info.queuePort, info.tablePort]) expect(await answers(port)).toBe(false);
      await waitFor(() => !alive(info.pid), { timeoutMs: 10_000, what: 'the Azurite process exits' });
    } finally {
      if (alive(info.pid)) process.kill(info.pid, 'SIGKILL');
      if (parent.exitCode === null) parent.kill('SIGKILL');
    }
  });

  it('stop() ends the process by itself once Azurite has closed, not by the 5 s SIGKILL fallback', async () => {
    const azurite = await startAzurite();
    // Serve a request first: an Azurite stopped right after start could exit by luck.
    await QueueServiceClient.fromConnectionString(azurite.connectionString).getProperties();
    const started = Date.now();
    await azurite.stop();
    // The fallback SIGKILLs after 5 s; a process that exits on its own is gone well before.
    expect(Date.now() - started).toBeLessThan(4000);
    expect(alive(azurite.pid)).toBe(false);
    expect(await answers(azurite.queuePort)).toBe(false);
  });

  it('keeps its state between runs with `location` (LOCAL_STATE_DIR)', async () => {
    const location = mkdtempSync(path.join(os.tmpdir(), 'syncbridge-azurite-state-'));
    try {
      const first = await startAzurite({ location });
      try {
        const q = QueueServiceClient.fromConnectionString(first.connectionString).getQueueClient('kept');
        await q.create();
        await q.sendMessage('survives a restart');
      } finally {
        await first.stop();
      }
      const second = await startAzurite({ location });
      try {
        const q = QueueServiceClient.fromConnectionString(second.connectionString).getQueueClient('kept');
        const got = await q.receiveMessages();
        expect(got.receivedMessageItems.map((m) => m.messageText)).toEqual(['survives a restart']);
      } finally {
        await second.stop();
      }
      // And without it, a fresh Azurite starts empty.
      const fresh = await startAzurite();
      try {
        const names: string[] = [];
        for await (const q of QueueServiceClient.fromConnectionString(fresh.connectionString).listQueues())
          names.push(q.name);
        expect(names).toEqual([]);
      } finally {
        await fresh.stop();
      }
    } finally {
      rmSync(location, { recursive: true, force: true });
    }
  });
});
