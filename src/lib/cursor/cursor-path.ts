/**
 * Validation of where the cursor file lives (CURSOR_DIRECTORY, CURSOR_FILE_NAME), for the config
 * schema. Azure Files (and Blob) names are limited to 255 characters per path component, and the
 * fileshare store writes the first cursor through a temporary file named
 * `<CURSOR_FILE_NAME>.<uuid>.tmp` next to it, which must fit that limit too.
 */
import { z } from 'zod';

/** Characters Azure Files names may not contain. */
const INVALID_NAME_CHARS = /["\\/:|<>*?]/;
const hasControlCharacter = (s: string) => [...s].some((c) => c.charCodeAt(0) < 0x20);

/** Azure Files' limit of one path component (a directory or file name). */
export const MAX_PATH_COMPONENT_LENGTH = 255;

/** Length of what the fileshare store appends for its temporary file: `.<uuid>.tmp`. */
export const TEMP_SUFFIX_LENGTH = '.'.length + 36 + '.tmp'.length;

/** Longest CURSOR_FILE_NAME: leaves room for the temporary suffix. */
export const MAX_CURSOR_FILE_NAME_LENGTH = MAX_PATH_COMPONENT_LENGTH - TEMP_SUFFIX_LENGTH;

function componentProblem(part: string): string | undefined {
  if (part === '') return 'has an empty segment (a doubled or leading/trailing "/")';
  if (part === '.' || part === '..') return `has a "${part}" segment (relative paths only, no "." or "..")`;
  if (part.length > MAX_PATH_COMPONENT_LENGTH)
    return `has a segment of ${part.length} characters (at most ${MAX_PATH_COMPONENT_LENGTH})`;
  if (INVALID_NAME_CHARS.test(part) || hasControlCharacter(part))
    return `has a segment with a character Azure Files does not allow: ${JSON.stringify(part)}`;
  return undefined;
}

/**
 * CURSOR_DIRECTORY: '' (the share's root) or a relative path of directory names separated by
 * "/", without empty, "." or ".." segments, each at most 255 characters.
 */
export const cursorDirectorySchema = z.string().superRefine((value, ctx) => {
  if (value === '') return;
  for (const part of value.split('/')) {
    const problem = componentProblem(part);
    if (problem) {
      ctx.addIssue({ code: 'custom', message: `must be a relative directory path; it ${problem}` });
      return;
    }
  }
});

/**
 * CURSOR_FILE_NAME: one file name (no "/"), at most 214 characters so that the store's temporary
 * file `<name>.<uuid>.tmp` stays within 255.
 */
export const cursorFileNameSchema = z.string().superRefine((value, ctx) => {
  if (value.includes('/')) {
    ctx.addIssue({
      code: 'custom',
      message: 'must be a file name, not a path (put directories in CURSOR_DIRECTORY)',
    });
    return;
  }
  const problem = componentProblem(value);
  if (problem) {
    ctx.addIssue({
      code: 'custom',
      message: `must be a file name; it ${problem.replace(/^has a segment/, 'is a name')}`,
    });
    return;
  }
  if (value.length > MAX_CURSOR_FILE_NAME_LENGTH)
    ctx.addIssue({
      code: 'custom',
      message:
        `must be at most ${MAX_CURSOR_FILE_NAME_LENGTH} characters (it has ${value.length}): the store writes the ` +
        `first cursor through "<name>.<uuid>.tmp", and Azure Files allows ${MAX_PATH_COMPONENT_LENGTH} per name`,
    });
});
