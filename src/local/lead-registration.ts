/**
 * Demo data: Flowfinity's "Lead Registration" sample app, generated deterministically from a seed.
 * Values have the REST view's quirks: numbers as strings, choice fields as {"Selection": ...},
 * dates without a UTC offset ("2020-09-06T04:37:31.000").
 */

export const LEAD_STATES = ['New', 'Contacted', 'Qualified'] as const;
export const DELETED_STATE = 'Deleted';

const INDUSTRIES = [
  'Energy',
  'Manufacturing',
  'Retail',
  'Healthcare',
  'Construction',
  'Finance',
  'Education',
];
const COMPANY_WORDS = [
  'Northwind',
  'Contoso',
  'Fabrikam',
  'Tailspin',
  'Adatum',
  'Litware',
  'Proseware',
  'Wingtip',
];
const COMPANY_SUFFIXES = ['Inc', 'Ltd', 'Group', 'Systems', 'Partners', 'Energy', 'Holdings'];
const FIRST_NAMES = ['Mike', 'Anna', 'Raj', 'Chloe', 'Tomas', 'Aiko', 'Fatima', 'Lars', 'Grace', 'Diego'];
const LAST_NAMES = [
  'Smith',
  'Nguyen',
  'Patel',
  'Martin',
  'Novak',
  'Tanaka',
  'Haddad',
  'Berg',
  'Okafor',
  'Ruiz',
];
const SALES_REPS = ['Mike Smith', 'Sarah Lee', 'Daniel Brown', 'Olivia Chen'];

/** Small, fast, deterministic PRNG (mulberry32): returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Mixes several integers into one 32-bit seed. */
export function mixSeed(...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x01000193) >>> 0;
    h = Math.imul(h ^ Math.floor(p / 4294967296), 0x01000193) >>> 0;
  }
  return h;
}

const pick = <T>(rng: () => number, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)] as T;
const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** Flowfinity's date-time form: local time, milliseconds, no offset. */
export function flowfinityDate(d: Date): string {
  return (
    `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}` +
    `T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}`
  );
}

const EPOCH = Date.UTC(2020, 8, 1, 8, 0, 0);

/** The fields of lead number `recordNumber` as first submitted (State "New"). */
export function makeLead(seed: number, recordNumber: number): Record<string, unknown> {
  const rng = mulberry32(mixSeed(seed, recordNumber));
  const first = pick(rng, FIRST_NAMES);
  const last = pick(rng, LAST_NAMES);
  const company = `${pick(rng, COMPANY_WORDS)} ${pick(rng, COMPANY_SUFFIXES)}`;
  const createdMs = EPOCH + recordNumber * 37 * 60_000 + Math.floor(rng() * 3_600_000);
  const created = new Date(createdMs);
  const firstContact = new Date(
    Date.UTC(created.getUTCFullYear(), created.getUTCMonth(), created.getUTCDate()),
  );
  return {
    Company: company,
    ContactName: `${first} ${last}`,
    Email: `${first}.${last}@${company.split(' ')[0]}.example`.toLowerCase(),
    Phone: `+1 555 ${pad(Math.floor(rng() * 1000), 3)} ${pad(Math.floor(rng() * 10000), 4)}`,
    EmployeeCount: String(1 + Math.floor(rng() * 5000)),
    TotalValue: String(Math.floor(rng() * 250_000)),
    Industry: { Selection: pick(rng, INDUSTRIES) },
    CallbackRequested: { Selection: [rng() < 0.4 ? 'Yes' : 'No'] },
    FirstContact: flowfinityDate(firstContact),
    CreatedBy: pick(rng, SALES_REPS),
    CreatedOn: flowfinityDate(created),
    State: 'New',
  };
}

/** A plausible edit of a lead: moves it along New → Contacted → Qualified and changes its value. */
export function reviseLead(fields: Record<string, unknown>, rng: () => number): Record<string, unknown> {
  const state = typeof fields.State === 'string' ? fields.State : 'New';
  const at = LEAD_STATES.indexOf(state as (typeof LEAD_STATES)[number]);
  const nextState = at >= 0 && at < LEAD_STATES.length - 1 && rng() < 0.6 ? LEAD_STATES[at + 1] : state;
  return {
    ...fields,
    TotalValue: String(Math.floor(rng() * 250_000)),
    CallbackRequested: { Selection: [rng() < 0.4 ? 'Yes' : 'No'] },
    State: state === DELETED_STATE ? 'New' : nextState,
  };
}
