/**
 * Issue 15 items 2 and 4: the engine's waits and the plan's deadline agree with host.json. A
 * handler still running at functionTimeout makes the host restart the worker (every message in
 * flight loses a delivery), and a message whose lock renewal ends before its handler does is
 * delivered twice.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backoffMs, FINAL_RETRY_ROUNDS, finalRoundWaitMs } from '../../src/lib/batch/applier';
import { ConfigError, loadConfig } from '../../src/lib/config';
import { parseTimeSpanMs } from '../../src/local/host';

const valid = {
  FLOWFINITY_VIEW_URL: 'https://acme.flowfinity.com/api/views/LeadSync',
  FLOWFINITY_ON_BEHALF_OF: 'integration',
  FLOWFINITY_USERNAME: 'sync',
  FLOWFINITY_PASSWORD: 's3cret-value',
  AzureWebJobsStorage:
    'DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=a2V5;EndpointSuffix=core.windows.net',
  TRANSPORT: 'storagequeue',
};
const problemsOf = (env: Record<string, string>) => {
  try {
    loadConfig(env);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
};

const host = JSON.parse(readFileSync(path.join(__dirname, '../../host.json'), 'utf8')) as {
  functionTimeout: string;
  extensions: { serviceBus: { maxAutoLockRenewalDuration: string } };
};
const functionTimeoutMs = parseTimeSpanMs(host.functionTimeout)!;

describe('engine timing settings', () => {
  const batch = loadConfig(valid).flows[0]!.batch;

  it('defaults: back-off 5, 15, 45, 120 s by delivery; plan deadline 7 min', () => {
    expect(batch.retryBackoffMs).toEqual([5000, 15_000, 45_000, 120_000]);
    expect(batch.planDeadlineSeconds).toBe(420);
  });

  it('the plan deadline leaves room inside functionTimeout, and inside the planner lease', () => {
    // Two minutes for dispatching the tail of the batch, writing its manifest and releasing the lease.
    expect(batch.planDeadlineSeconds * 1000 + 120_000).toBeLessThanOrEqual(functionTimeoutMs);
    expect(batch.planDeadlineSeconds).toBeLessThan(batch.planLeaseSeconds);
    // Without the deadline the view's own bounds would not fit: that is why it exists.
    const view = loadConfig(valid).flows[0]!.view;
    expect(view.timeoutMs * (view.maxRetries + 1)).toBeGreaterThanOrEqual(batch.planDeadlineSeconds * 1000);
  });

  it("one delivery's waits stay well inside functionTimeout and the lock renewal", () => {
    // Worst case of the last delivery: its retry rounds, then the wait before rethrowing.
    const worst = (schedule: readonly number[]) =>
      Array.from({ length: FINAL_RETRY_ROUNDS }, (_, i) => finalRoundWaitMs(schedule, i + 1)).reduce(
        (a, b) => a + b,
        0,
      ) + backoffMs(schedule, Number.MAX_SAFE_INTEGER);
    expect(worst(batch.retryBackoffMs)).toBeLessThanOrEqual(functionTimeoutMs / 2);
    // The largest schedule the setting accepts still leaves 3 minutes for the applying itself.
    const largest = loadConfig({ ...valid, SYNC_RETRY_BACKOFF_SECONDS: '240,240,240,240' }).flows[0]!.batch;
    expect(worst(largest.retryBackoffMs)).toBeLessThanOrEqual(functionTimeoutMs - 180_000);
    expect(parseTimeSpanMs(host.extensions.serviceBus.maxAutoLockRenewalDuration)).toBeGreaterThan(
      functionTimeoutMs,
    );
  });

  it('an unset deadline follows a shorter planner lease (3/4 of it); a set one is checked against it', () => {
    expect(loadConfig({ ...valid, SYNC_PLAN_LEASE_SECONDS: '30' }).flows[0]!.batch.planDeadlineSeconds).toBe(
      22,
    );
    expect(
      loadConfig({ ...valid, SYNC_PLAN_LEASE_SECONDS: '3600' }).flows[0]!.batch.planDeadlineSeconds,
    ).toBe(420);
    expect(
      loadConfig({ ...valid, SYNC_PLAN_LEASE_SECONDS: '30', SYNC_PLAN_DEADLINE_SECONDS: '20' }).flows[0]!
        .batch.planDeadlineSeconds,
    ).toBe(20);
  });

  it('refuses a wait above 240 s, a non-number, and a deadline not below the planner lease', () => {
    expect(problemsOf({ ...valid, SYNC_RETRY_BACKOFF_SECONDS: '5,300' }).join('\n')).toMatch(
      /SYNC_RETRY_BACKOFF_SECONDS is invalid.*at most 240 s/,
    );
    expect(problemsOf({ ...valid, SYNC_RETRY_BACKOFF_SECONDS: '5,soon' }).join('\n')).toMatch(
      /SYNC_RETRY_BACKOFF_SECONDS is invalid.*whole number/,
    );
    expect(
      problemsOf({ ...valid, SYNC_PLAN_DEADLINE_SECONDS: '600', SYNC_PLAN_LEASE_SECONDS: '600' }),
    ).toEqual([
      expect.stringMatching(/SYNC_PLAN_DEADLINE_SECONDS \(600\) must be below SYNC_PLAN_LEASE_SECONDS/),
    ]);
    expect(loadConfig({ ...valid, SYNC_RETRY_BACKOFF_SECONDS: '0' }).flows[0]!.batch.retryBackoffMs).toEqual([
      0,
    ]);
  });
});
