/**
 * The Content-Type check: `application/json`, with no charset or charset UTF-8. Case and
 * parameters are tolerated (`Application/JSON; Charset="UTF-8"; foo=bar`); anything else,
 * including a missing header or two of them joined by a comma, is refused.
 */

export type ContentTypeVerdict = { ok: true } | { ok: false; reason: string };

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const QUOTED = /^"(?:[^"\\]|\\.)*"$/;

export function checkContentType(
  value: string | undefined,
  accepted: readonly string[] = ['application/json'],
): ContentTypeVerdict {
  if (value === undefined || value.trim() === '')
    return { ok: false, reason: 'the Content-Type header is missing' };
  if (value.length > 256) return { ok: false, reason: 'the Content-Type header is too long' };
  const [typePart, ...params] = value.split(';');
  const mediaType = typePart!.trim().toLowerCase();
  const [type, subtype, ...rest] = mediaType.split('/');
  if (!type || !subtype || rest.length > 0 || !TOKEN.test(type) || !TOKEN.test(subtype))
    return { ok: false, reason: 'the Content-Type header is not a media type' };
  if (!accepted.includes(mediaType))
    return { ok: false, reason: `the media type must be ${accepted.join(' or ')}` };
  for (const param of params) {
    const eq = param.indexOf('=');
    if (eq < 0) {
      if (param.trim() === '') continue;
      return { ok: false, reason: 'a Content-Type parameter is malformed' };
    }
    const name = param.slice(0, eq).trim().toLowerCase();
    let v = param.slice(eq + 1).trim();
    // A value is a token or a quoted string; anything else (`x=1, application/json`: two headers
    // joined by a comma) is malformed.
    if (!TOKEN.test(name) || !(TOKEN.test(v) || QUOTED.test(v)))
      return { ok: false, reason: 'a Content-Type parameter is malformed' };
    if (QUOTED.test(v)) v = v.slice(1, -1);
    if (name === 'charset' && !['utf-8', 'utf8'].includes(v.toLowerCase()))
      return { ok: false, reason: 'the charset must be UTF-8' };
  }
  return { ok: true };
}
