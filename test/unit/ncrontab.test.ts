import { describe, expect, it } from 'vitest';
import { ncrontabProblem, ncrontabSchema, parseNcrontab } from '../../src/lib/ncrontab';
import { parseTimerSchedule } from '../../src/local/host/timer-driver';

const at = (iso: string) => new Date(iso);
const iso = (d: Date) => d.toISOString();

function occurrences(expr: string, fromIso: string, n: number, tz = 'UTC'): string[] {
  const s = parseNcrontab(expr);
  const out: string[] = [];
  let t = at(fromIso);
  for (let i = 0; i < n; i++) {
    t = s.nextAfter(t, tz);
    out.push(iso(t));
  }
  return out;
}

describe('NCRONTAB as the Functions host evaluates it', () => {
  it('needs BOTH day-of-month and day-of-week when both are restricted (Friday the 13th)', () => {
    // cron-parser alone would also fire on every Friday and every 13th.
    expect(occurrences('0 0 12 13 * 5', '2026-01-01T00:00:00Z', 3)).toEqual([
      '2026-02-13T12:00:00.000Z',
      '2026-03-13T12:00:00.000Z',
      '2026-11-13T12:00:00.000Z',
    ]);
    expect(occurrences('0 30 9 1-7 * MON', '2026-01-01T00:00:00Z', 2)).toEqual([
      '2026-01-05T09:30:00.000Z', // the first Monday of January
      '2026-02-02T09:30:00.000Z',
    ]);
  });

  it('keeps the usual meaning when only one day field is restricted', () => {
    expect(occurrences('0 */5 * * * *', '2026-01-01T00:01:00Z', 2)).toEqual([
      '2026-01-01T00:05:00.000Z',
      '2026-01-01T00:10:00.000Z',
    ]);
    expect(occurrences('0 0 8 * * MON-FRI', '2026-01-02T09:00:00Z', 2)).toEqual([
      '2026-01-05T08:00:00.000Z', // Friday 2 Jan 09:00 → Monday
      '2026-01-06T08:00:00.000Z',
    ]);
    expect(occurrences('0 0 0 31 * *', '2026-01-01T00:00:00Z', 2)).toEqual([
      '2026-01-31T00:00:00.000Z',
      '2026-03-31T00:00:00.000Z',
    ]);
    // Sunday as 0 and as 7.
    expect(occurrences('0 0 0 * * 7', '2026-01-01T00:00:00Z', 1)).toEqual(['2026-01-04T00:00:00.000Z']);
  });

  it('evaluates in the given time zone (WEBSITE_TIME_ZONE)', () => {
    // 12:00 on the 13th in Auckland (UTC+13 in February) is 23:00 UTC on the 12th.
    expect(occurrences('0 0 12 13 * FRI', '2026-01-01T00:00:00Z', 1, 'Pacific/Auckland')).toEqual([
      '2026-02-12T23:00:00.000Z',
    ]);
  });

  it('rejects L, W, # and ?, wrong field counts and nonsense, saying why', () => {
    expect(ncrontabProblem('0 0 12 L * *')).toMatch(/day field "L" uses "L"/);
    expect(ncrontabProblem('0 0 12 * * 5#2')).toMatch(/uses "#"/);
    expect(ncrontabProblem('0 0 12 15W * *')).toMatch(/uses "W"/);
    expect(ncrontabProblem('0 0 12 ? * MON')).toMatch(/uses "\?"/);
    expect(ncrontabProblem('*/5 * * * *')).toMatch(/6 fields/);
    expect(ncrontabProblem('0 0 12 * FOO *')).toMatch(/unknown name "FOO"/);
    expect(ncrontabProblem('0 0 25 * * *')).toMatch(/not a valid schedule/);
    expect(ncrontabProblem('0 0 12 * JUL SAT')).toBeUndefined();
    expect(() => parseNcrontab('0 0 12 L * *')).toThrow(/timer schedule "0 0 12 L \* \*"/);
  });

  it('ncrontabSchema validates a setting the same way', () => {
    expect(ncrontabSchema.safeParse(' 0 */5 * * * * ').data).toBe('0 */5 * * * *');
    const bad = ncrontabSchema.safeParse('0 0 12 * * 5#2');
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.message).toMatch(/uses "#"/);
  });

  it('drives the local timer: parseTimerSchedule uses the same rules', () => {
    const s = parseTimerSchedule('0 0 12 13 * 5');
    expect(iso(s.nextAfter(at('2026-01-01T00:00:00Z')))).toBe('2026-02-13T12:00:00.000Z');
    expect(() => parseTimerSchedule('0 0 12 L * *')).toThrow(/does not support/);
    expect(() => parseTimerSchedule('0 0 12 * * *', 'Not/AZone')).toThrow();
    expect(iso(parseTimerSchedule('00:00:30').nextAfter(at('2026-01-01T00:00:00Z')))).toBe(
      '2026-01-01T00:00:30.000Z',
    );
  });
});
