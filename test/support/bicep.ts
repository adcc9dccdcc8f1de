/**
 * Reads Bicep with tree-sitter (`tree-sitter-bicep`, prebuilt binaries from npm): syntax errors,
 * resource declarations (nested ones get their full type), object literals and app settings. No
 * Bicep compiler is available here; this is what test/infra.test.ts and
 * test/settings-consistency.test.ts check the infra with.
 */
import { readFileSync } from 'node:fs';
import Parser from 'tree-sitter';
import Bicep from 'tree-sitter-bicep';
import type { Shape } from './arm-models';

type Node = Parser.SyntaxNode;

let parser: Parser | undefined;
export function parseBicep(text: string): Parser.Tree {
  if (!parser) {
    parser = new Parser();
    parser.setLanguage(Bicep as unknown as Parser.Language);
  }
  // tree-sitter's default buffer is 32 KiB; give it room for any file.
  return parser.parse(text, undefined, { bufferSize: Math.max(64 * 1024, text.length * 4) });
}

export interface BicepFile {
  file: string;
  text: string;
  tree: Parser.Tree;
}

export function readBicep(file: string): BicepFile {
  const text = readFileSync(file, 'utf8');
  return { file, text, tree: parseBicep(text) };
}

/** Every ERROR and MISSING node, as `file:line:col: ...`. */
export function syntaxErrors(b: BicepFile): string[] {
  const out: string[] = [];
  const visit = (n: Node) => {
    if (n.type === 'ERROR' || n.isMissing) {
      const where = `${b.file}:${n.startPosition.row + 1}:${n.startPosition.column + 1}`;
      const what = n.isMissing
        ? `missing ${n.type}`
        : `syntax error near ${JSON.stringify(n.text.slice(0, 40))}`;
      out.push(`${where}: ${what}`);
      if (n.type === 'ERROR') return;
    }
    for (const c of n.children) visit(c);
  };
  visit(b.tree.rootNode);
  return out;
}

/** The text of a string literal without interpolation, else undefined. */
export function literalString(n: Node | null | undefined): string | undefined {
  if (!n || n.type !== 'string') return undefined;
  if (n.namedChildren.some((c) => c.type !== 'string_content' && c.type !== 'escape_sequence'))
    return undefined;
  return n.text.slice(1, -1).replace(/\\(.)/g, '$1');
}

/** An object property's key when it is a plain identifier or a literal string. */
export function propertyKey(p: Node): string | undefined {
  const k = p.namedChildren[0];
  if (!k) return undefined;
  if (k.type === 'identifier') return k.text;
  return literalString(k);
}

/** The value node of an object property (the last named child after the key). */
export function propertyValue(p: Node): Node | undefined {
  return p.namedChildren.length >= 2 ? p.namedChildren[p.namedChildren.length - 1] : undefined;
}

export interface BicepResource {
  file: string;
  line: number;
  symbol: string;
  /** Full type, e.g. `Microsoft.Web/sites/config`. */
  type: string;
  apiVersion: string;
  existing: boolean;
  /** The body object (of the loop or condition, when there is one). */
  body: Node | undefined;
  /** The `name` property when it is a literal string. */
  name?: string;
}

/** The object a resource (or module) body ends in, through `if (...)` and `[for ...: ...]`. */
export function bodyObject(n: Node | undefined): Node | undefined {
  if (!n) return undefined;
  if (n.type === 'object') return n;
  if (n.type === 'if_statement' || n.type === 'for_statement')
    return bodyObject(n.namedChildren[n.namedChildren.length - 1]);
  return undefined;
}

export function resources(b: BicepFile): BicepResource[] {
  const out: BicepResource[] = [];
  const visit = (n: Node, parent: BicepResource | undefined) => {
    if (n.type === 'resource_declaration') {
      const [sym, typeNode, ...rest] = n.namedChildren;
      const typeText = literalString(typeNode) ?? '';
      const [typePart, version] = typeText.split('@') as [string, string | undefined];
      const type = parent && !typePart.includes('.') ? `${parent.type}/${typePart}` : typePart;
      const body = bodyObject(rest[rest.length - 1]);
      const nameProp = body?.namedChildren.find(
        (p) => p.type === 'object_property' && propertyKey(p) === 'name',
      );
      const r: BicepResource = {
        file: b.file,
        line: n.startPosition.row + 1,
        symbol: sym?.text ?? '?',
        type,
        apiVersion: version ?? parent?.apiVersion ?? '',
        existing: n.children.some((c) => c.type === 'existing'),
        body,
        name: literalString(nameProp ? propertyValue(nameProp) : undefined),
      };
      out.push(r);
      if (body) for (const c of body.namedChildren) visit(c, r);
      return;
    }
    for (const c of n.namedChildren) visit(c, parent);
  };
  visit(b.tree.rootNode, undefined);
  return out;
}

/** Resource body keys that are Bicep's own, not REST properties. */
const BICEP_KEYWORDS = new Set(['name', 'parent', 'scope', 'dependsOn']);

/**
 * Checks the keys of a resource body (and every nested object literal) against the REST shape.
 * Values that are expressions (a parameter, a function call, a ternary of non-objects) are not
 * checked: only what is written here as an object or array literal.
 */
export function propertyProblems(r: BicepResource, shape: Shape): string[] {
  const problems: string[] = [];
  const checkValue = (value: Node | undefined, s: Shape | undefined, where: string) => {
    if (!value || !s) return;
    switch (value.type) {
      case 'object':
        if (s.kind === 'object') checkObject(value, s, where);
        return;
      case 'array':
        for (const el of value.namedChildren)
          checkValue(el, s.kind === 'array' ? s.element : undefined, `${where}[]`);
        return;
      case 'for_statement': {
        const el = bodyObject(value);
        checkValue(el, s.kind === 'array' ? s.element : s, `${where}[]`);
        return;
      }
      case 'ternary_expression':
        for (const branch of value.namedChildren.slice(1)) checkValue(branch, s, where);
        return;
      case 'parenthesized_expression':
        checkValue(value.namedChildren[0], s, where);
        return;
      default:
        return;
    }
  };
  const checkObject = (obj: Node, s: Extract<Shape, { kind: 'object' }>, where: string) => {
    const props = s.props();
    for (const p of obj.namedChildren) {
      if (p.type !== 'object_property') continue;
      const value = propertyValue(p);
      if (value?.type === 'resource_declaration' || p.namedChildren[0]?.type === 'resource_declaration')
        continue;
      const key = propertyKey(p);
      if (key === undefined) continue; // an interpolated key: unknown here
      if (where === '' && BICEP_KEYWORDS.has(key)) continue;
      const path = where ? `${where}.${key}` : key;
      const known = props.get(key);
      if (!known) {
        if (!s.open) {
          const near = [...props.keys()].filter((k) => k.toLowerCase() === key.toLowerCase());
          problems.push(
            `${r.file}:${p.startPosition.row + 1}: ${r.type}: unknown property "${path}"` +
              (near.length ? ` (did you mean "${near[0]}"?)` : ''),
          );
        }
        continue;
      }
      checkValue(value, known, path);
    }
  };
  if (r.body && shape.kind === 'object') checkObject(r.body, shape, '');
  return problems;
}

/** The `appsettings` config resource's settings: name → value expression text. */
export function appSettings(b: BicepFile): Map<string, Node> {
  const r = resources(b).find((x) => x.type.endsWith('/config') && x.name === 'appsettings');
  if (!r?.body) throw new Error(`${b.file}: no config resource named 'appsettings'`);
  const props = r.body.namedChildren.find(
    (p) => p.type === 'object_property' && propertyKey(p) === 'properties',
  );
  const obj = props ? propertyValue(props) : undefined;
  if (obj?.type !== 'object') throw new Error(`${b.file}: appsettings properties must be an object literal`);
  const out = new Map<string, Node>();
  for (const p of obj.namedChildren) {
    if (p.type !== 'object_property') continue;
    const key = propertyKey(p);
    const value = propertyValue(p);
    if (key === undefined || !value)
      throw new Error(`${b.file}:${p.startPosition.row + 1}: app setting without a literal name`);
    if (out.has(key)) throw new Error(`${b.file}:${p.startPosition.row + 1}: app setting ${key} set twice`);
    out.set(key, value);
  }
  return out;
}
