/**
 * NCRONTAB, the schedule format of the Functions timer trigger: six fields
 * `{second} {minute} {hour} {day} {month} {day-of-week}`, with `*`, lists, ranges, steps and
 * month/day names, evaluated the way the Functions host (the NCrontab library) evaluates them:
 *
 * - when BOTH day-of-month and day-of-week are restricted, a day must match BOTH (NCrontab
 *   checks the day of week of each matching day-of-month). Classic cron, and cron-parser,
 *   fire when EITHER matches: `0 0 12 13 * 5` is "Friday the 13th" here, not "every 13th and
 *   every Friday";
 * - `L`, `W`, `#` and `?` (Quartz and cron-parser extensions) do not exist in NCRONTAB and are
 *   rejected, instead of silently meaning something the host would refuse.
 *
 * cron-parser computes the candidate times; this module adds the host's day rule on top.
 */
import { CronExpressionParser } from 'cron-parser';
import { z } from 'zod';

const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];
const DAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];
const FIELD_NAMES = ['second', 'minute', 'hour', 'day', 'month', 'day-of-week'] as const;

/** At most this many day-of-month candidates are tried before a schedule is declared empty. */
const MAX_CANDIDATES = 20_000;

export interface NcrontabSchedule {
  readonly expression: string;
  /** The first occurrence strictly after `after`, in `timeZone` (IANA name; default UTC). */
  nextAfter(after: Date, timeZone?: string): Date;
}

/** Why an expression is not valid NCRONTAB, or undefined when it is. */
export function ncrontabProblem(expression: string): string | undefined {
  const fields = expression.trim().split(/\s+/);
  if (fields.length !== 6)
    return `must be an NCRONTAB expression with 6 fields ({second} {minute} {hour} {day} {month} {day-of-week}), got ${fields.length}`;
  for (const [i, field] of fields.entries()) {
    const name = FIELD_NAMES[i]!;
    const special = /[LW#?]/i.exec(field.replace(/[A-Za-z]{3}/g, (w) => (isName(w, i) ? '' : w)));
    if (special)
      return `the ${name} field "${field}" uses "${special[0]}", which NCRONTAB (the Functions timer) does not support`;
    if (!/^[0-9A-Za-z*,/-]+$/.test(field))
      return `the ${name} field "${field}" has characters NCRONTAB does not allow`;
    for (const word of field.match(/[A-Za-z]+/g) ?? [])
      if (!isName(word, i)) return `the ${name} field "${field}" has an unknown name "${word}"`;
  }
  try {
    CronExpressionParser.parse(fields.join(' '), { currentDate: new Date(0), tz: 'UTC' });
  } catch (e) {
    return `is not a valid schedule: ${e instanceof Error ? e.message : String(e)}`;
  }
  return undefined;
}

function isName(word: string, fieldIndex: number): boolean {
  const w = word.toUpperCase();
  return (fieldIndex === 4 && MONTHS.includes(w)) || (fieldIndex === 5 && DAYS.includes(w));
}

/** Parses an NCRONTAB expression; throws an Error saying what is wrong. */
export function parseNcrontab(expression: string): NcrontabSchedule {
  const problem = ncrontabProblem(expression);
  if (problem) throw new Error(`timer schedule "${expression}" ${problem}`);
  const fields = expression.trim().split(/\s+/);
  const dayOfWeek = fields[5]!;
  const dowRestricted = dayOfWeek !== '*';
  // Candidate days come from every field but the day of week; the day-of-week field then filters.
  const candidates = dowRestricted ? [...fields.slice(0, 5), '*'].join(' ') : fields.join(' ');
  const allowedDays = dowRestricted
    ? new Set(
        CronExpressionParser.parse(fields.join(' '), { tz: 'UTC' }).fields.dayOfWeek.values.map((d) =>
          Number(d) === 7 ? 0 : Number(d),
        ),
      )
    : undefined;
  return {
    expression,
    nextAfter(after, timeZone = 'UTC') {
      const it = CronExpressionParser.parse(candidates, { currentDate: after, tz: timeZone });
      for (let i = 0; i < MAX_CANDIDATES; i++) {
        const next = it.next();
        if (!allowedDays || allowedDays.has(next.getDay())) return next.toDate();
      }
      throw new Error(
        `timer schedule "${expression}" has no occurrence in the next ${MAX_CANDIDATES} candidate times`,
      );
    },
  };
}

/** The zod schema for an NCRONTAB setting (SYNC_SCHEDULE and per-flow schedules). */
export const ncrontabSchema = z
  .string()
  .trim()
  .superRefine((value, ctx) => {
    const problem = ncrontabProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
