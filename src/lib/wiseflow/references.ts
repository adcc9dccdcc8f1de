/**
 * WISEflow external-source references.
 *
 * Two patterns are published: the help article allows `^[0-9a-zA-Z\-_,.;:|]+$` (the wide set),
 * the API specification's create body says `^[a-zA-Z0-9-_]+$`, at most 255 characters (the
 * strict set). syncbridge ACCEPTS any reference in the wide set (a source created in the app by
 * a manager may use it), and CREATES only references in the strict set.
 *
 * A reference derived from a flow code is deterministic (the same flow code always gives the
 * same reference, so a rerun finds the source it created instead of creating another) and
 * collision-aware: a flow code that is already a valid strict reference is used unchanged; any
 * other code is sanitised AND suffixed with a hash of the original code, so two codes that
 * sanitise to the same text ("A.B" and "A:B") still get different references, and neither can
 * equal an unchanged code (unless a code literally ends in the same 10-hex-digit hash).
 */
import { createHash } from 'node:crypto';
import { ValidationError } from '../errors';

export const REFERENCE_MAX_LENGTH = 255;
/** What the help article allows (accepted on input). */
export const WIDE_REFERENCE_PATTERN = /^[0-9a-zA-Z\-_,.;:|]+$/;
/** What the API's create body allows (the only form syncbridge creates). */
export const STRICT_REFERENCE_PATTERN = /^[a-zA-Z0-9\-_]+$/;

const HASH_HEX_CHARS = 10;

export const isWideReference = (s: string): boolean =>
  s.length > 0 && s.length <= REFERENCE_MAX_LENGTH && WIDE_REFERENCE_PATTERN.test(s);

export const isStrictReference = (s: string): boolean =>
  s.length > 0 && s.length <= REFERENCE_MAX_LENGTH && STRICT_REFERENCE_PATTERN.test(s);

/** Validates a reference given by a user or a payload (the wide set). Throws ValidationError. */
export function parseReference(input: unknown, what = 'reference'): string {
  if (typeof input !== 'string' || input.length === 0)
    throw new ValidationError(`${what} must be a non-empty string`, { code: 'invalid_reference' });
  if (input.length > REFERENCE_MAX_LENGTH)
    throw new ValidationError(`${what} is ${input.length} characters long; at most ${REFERENCE_MAX_LENGTH}`, {
      code: 'invalid_reference',
    });
  if (!WIDE_REFERENCE_PATTERN.test(input))
    throw new ValidationError(
      `${what} ${JSON.stringify(input)} has characters WISEflow does not allow (letters, digits and - _ , . ; : | only)`,
      { code: 'invalid_reference' },
    );
  return input;
}

/** Validates a reference syncbridge is about to create (the strict set). Throws ValidationError. */
export function parseStrictReference(input: unknown, what = 'reference'): string {
  const s = parseReference(input, what);
  if (!STRICT_REFERENCE_PATTERN.test(s))
    throw new ValidationError(
      `${what} ${JSON.stringify(s)} cannot be created through the API (letters, digits, - and _ only)`,
      { code: 'invalid_reference' },
    );
  return s;
}

/**
 * The reference syncbridge creates for a flow that has no external source yet. Deterministic
 * and always valid under the strict pattern. A flow without a code falls back to `flow-<flowId>`.
 */
export function referenceFromFlowCode(flowCode: string | undefined, flowId: string): string {
  const code = flowCode?.trim() ?? '';
  if (code === '') return `flow-${flowId.replace(/[^0-9a-zA-Z]/g, '') || 'unknown'}`;
  if (isStrictReference(code)) return code;
  const hash = createHash('sha256').update(code, 'utf8').digest('hex').slice(0, HASH_HEX_CHARS);
  const sanitised =
    code
      // "Å" → "A" + combining ring, then the combining marks go: readable ASCII where possible.
      .normalize('NFKD')
      .replace(/[\u0300-\u036f]/g, '')
      .replace(/[^a-zA-Z0-9\-_]+/g, '-')
      .replace(/^-+|-+$/g, '') || 'flow';
  const room = REFERENCE_MAX_LENGTH - HASH_HEX_CHARS - 1;
  return `${sanitised.slice(0, room)}_${hash}`;
}
