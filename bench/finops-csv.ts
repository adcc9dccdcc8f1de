/**
 * Benchmark (not a test, part of `npm run bench`, section `finops`): an F&O CSV export of `rows`
 * rows processed end to end on the app's code path (download → parse → records → chunks →
 * records messages → conditional writes to a target), with the peak memory of that side. The
 * export is generated on the fly by the F&O simulator (streamed, never held in memory) and served
 * over HTTPS on loopback; the app side runs in a child process (bench/finops-csv-child.ts) so the
 * simulator's own memory is not counted. Issue 9's goal: peak RSS ≤ 300 MB for 1,000,000 rows.
 *
 * Alone (after `npm run build`): node -e "require('./dist/bench/finops-csv').benchFinopsCsv(1e6).then(console.log)"
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { FinOpsSimulator, generatedRows } from '../src/local/finops-simulator';
import type { FinopsCsvChildResult } from './finops-csv-child';

/** Beyond 2^53, as F&O's are: the version of every row. */
const CONTROL_NUMBER = '9007199254740993';

export interface FinopsCsvBenchResult {
  rows: number;
  seconds: number;
  rowsPerSecond: number;
  peakRssMb: number;
}

const COLUMNS = [
  'dataAreaId',
  'CUSTOMERACCOUNT',
  'ORGANIZATIONNAME',
  'CUSTOMERGROUPID',
  'ADDRESSSTREET',
  'ADDRESSCITY',
  'CREDITLIMIT',
  'SALESCURRENCYCODE',
  'MODIFIEDDATETIME',
];

/** A realistic customer row: about 150 bytes, some fields quoted (commas, quotes, line breaks). */
function customer(i: number) {
  return {
    dataAreaId: 'usmf',
    CUSTOMERACCOUNT: `US-${String(i).padStart(7, '0')}`,
    ORGANIZATIONNAME: i % 7 === 0 ? `Contoso "${i}", Ltd.` : `Customer ${i} Retail`,
    CUSTOMERGROUPID: String(10 + (i % 5) * 10),
    ADDRESSSTREET: i % 11 === 0 ? `${i} Main Street\r\nSuite ${i % 100}` : `${i} Main Street`,
    ADDRESSCITY: 'Seattle',
    CREDITLIMIT: `${(i % 1000) * 100}.00`,
    SALESCURRENCYCODE: 'USD',
    MODIFIEDDATETIME: new Date(1_700_000_000_000 + i * 1000).toISOString(),
  };
}

export async function benchFinopsCsv(
  rows: number,
): Promise<FinopsCsvBenchResult & { child: FinopsCsvChildResult }> {
  const sim = await FinOpsSimulator.start();
  try {
    const handle = sim.addExport({
      entity: 'Customers V3',
      format: 'csv',
      columns: COLUMNS,
      rows: generatedRows(rows, customer),
    });
    const url = sim.downloadUrl(handle.exportId);
    const childJs = path.join(__dirname, 'finops-csv-child.js');
    let child: FinopsCsvChildResult;
    if (existsSync(childJs)) {
      child = await new Promise<FinopsCsvChildResult>((resolve, reject) => {
        const p = spawn(process.execPath, [childJs], {
          env: {
            ...process.env,
            BENCH_FINOPS: JSON.stringify({ url, caPem: sim.caPem, controlNumber: CONTROL_NUMBER }),
          },
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let out = '';
        p.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
        p.on('error', reject);
        p.on('exit', (code) =>
          code === 0
            ? resolve(JSON.parse(out.trim()) as FinopsCsvChildResult)
            : reject(new Error(`finops-csv-child exited with ${code}`)),
        );
      });
    } else {
      // Run from sources (no build): same process, so the figure includes the simulator.
      const { processExport } = await import('./finops-csv-child.js');
      child = await processExport(url, sim.caPem, CONTROL_NUMBER);
    }
    if (child.rows !== rows || child.malformed !== 0 || child.applied !== rows)
      throw new Error(
        `read ${child.rows} rows (${child.malformed} malformed), applied ${child.applied}, expected ${rows}`,
      );
    return {
      rows: child.rows,
      seconds: child.seconds,
      rowsPerSecond: Math.round(child.rows / child.seconds),
      peakRssMb: Math.round((child.peakRssBytes / 1024 / 1024) * 10) / 10,
      child,
    };
  } finally {
    await sim.close();
  }
}
