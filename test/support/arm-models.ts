/**
 * The REST shape of ARM resource types, read from the Azure SDK for JavaScript management
 * packages (`@azure/arm-*`, dev dependencies), for the offline Bicep check in test/infra.test.ts.
 *
 * Two generations of generated SDKs are read:
 * - AutoRest (`models/mappers.js`): every model is a mapper `{ type: { className, modelProperties:
 *   { x: { serializedName: 'properties.y', type } } } }`; `serializedName` is the REST name, with
 *   `properties.` flattening spelled out. Polymorphic models add their subtypes (`uberParent`).
 * - TypeSpec (`models/**\/models.js`): one `<model>Serializer(item)` function per model returns an
 *   object literal whose keys are the REST names; nested models are other `...Serializer` calls.
 *   Read with the TypeScript parser, never executed.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import vm from 'node:vm';
import ts from 'typescript';

/** What a JSON value may look like: an object with known keys, an array, or anything. */
export type Shape =
  | { kind: 'object'; props: () => Map<string, Shape>; open: boolean; name: string }
  | { kind: 'array'; element: Shape }
  | { kind: 'any' };

const ANY: Shape = { kind: 'any' };
const OPEN: Shape = { kind: 'object', props: () => new Map(), open: true, name: 'dictionary' };

const nodeRequire = createRequire(__filename);

function packageDir(pkg: string): string {
  return path.dirname(nodeRequire.resolve(`${pkg}/package.json`));
}

// ---- AutoRest mappers ---------------------------------------------------------------------------

interface MapperType {
  name: string;
  className?: string;
  modelProperties?: Record<string, Mapper>;
  element?: Mapper;
  value?: Mapper;
  uberParent?: string;
  polymorphicDiscriminator?: unknown;
  additionalProperties?: unknown;
}
interface Mapper {
  serializedName?: string;
  readOnly?: boolean;
  type: MapperType;
}

const MAPPER_FILES = [
  'dist/commonjs/models/mappers.js',
  'dist-esm/src/models/mappers.js',
  'esm/models/mappers.js',
  'dist/esm/models/mappers.js',
];

function loadMapperModule(file: string): Record<string, Mapper> {
  const text = readFileSync(file, 'utf8');
  if (/^\s*(\/\*[\s\S]*?\*\/\s*)?"use strict"/.test(text) && /\bexports\./.test(text))
    return nodeRequire(file) as Record<string, Mapper>;
  // An ES module: compile to CommonJS and evaluate it in isolation (mappers are plain data).
  const js = ts.transpileModule(text, {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2020 },
  }).outputText;
  const module = { exports: {} as Record<string, Mapper> };
  vm.runInNewContext(
    js,
    { module, exports: module.exports, require: createRequire(file) },
    { filename: file },
  );
  return module.exports;
}

/** Splits `properties.a\\.b.c` on unescaped dots: ['properties', 'a.b', 'c']. */
function splitSerializedName(name: string): string[] {
  return name.split(/(?<!\\)\./).map((p) => p.replace(/\\\./g, '.'));
}

class MapperModels {
  private readonly byClass = new Map<string, Mapper>();
  private readonly subtypes = new Map<string, Mapper[]>();
  private readonly cache = new Map<string, Shape>();

  constructor(mappers: Record<string, Mapper>) {
    for (const m of Object.values(mappers)) {
      const cls = m?.type?.className;
      if (!cls) continue;
      this.byClass.set(cls, m);
      const parent = m.type.uberParent;
      if (parent && parent !== cls) this.subtypes.set(parent, [...(this.subtypes.get(parent) ?? []), m]);
    }
  }

  has(className: string): boolean {
    return this.byClass.has(className);
  }

  shape(className: string): Shape {
    const cached = this.cache.get(className);
    if (cached) return cached;
    const mapper = this.byClass.get(className);
    if (!mapper) throw new Error(`no mapper named ${className}`);
    let props: Map<string, Shape> | undefined;
    const shape: Shape = {
      kind: 'object',
      name: className,
      open: mapper.type.additionalProperties !== undefined,
      props: () => (props ??= this.properties(className)),
    };
    this.cache.set(className, shape);
    return shape;
  }

  private properties(className: string): Map<string, Shape> {
    const root = new Map<string, Shape>();
    const mappers = [this.byClass.get(className)!, ...(this.subtypes.get(className) ?? [])];
    for (const mapper of mappers)
      for (const prop of Object.values(mapper.type.modelProperties ?? {})) {
        if (!prop.serializedName) continue;
        const parts = splitSerializedName(prop.serializedName);
        let level = root;
        for (const part of parts.slice(0, -1)) {
          let next = level.get(part);
          if (!next || next.kind !== 'object') {
            const nested = new Map<string, Shape>();
            next = { kind: 'object', name: `${className}.${part}`, open: false, props: () => nested };
            level.set(part, next);
          }
          level = next.props();
        }
        const leaf = parts.at(-1)!;
        if (!level.has(leaf)) level.set(leaf, this.typeShape(prop.type));
      }
    return root;
  }

  private typeShape(t: MapperType): Shape {
    switch (t.name) {
      case 'Composite':
        return t.className && this.byClass.has(t.className) ? this.shape(t.className) : ANY;
      case 'Sequence':
        return { kind: 'array', element: t.element ? this.typeShape(t.element.type) : ANY };
      case 'Dictionary':
        return OPEN;
      default:
        return ANY;
    }
  }
}

// ---- TypeSpec serializers ------------------------------------------------------------------------

function listFiles(dir: string, name: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...listFiles(p, name));
    else if (e.name === name) out.push(p);
  }
  return out;
}

/** The name of the serializer a call invokes: `fooSerializer(x)`, `(0, import_m.fooSerializer)(x)`. */
function calleeName(call: ts.CallExpression): string | undefined {
  let e: ts.Expression = call.expression;
  while (ts.isParenthesizedExpression(e)) e = e.expression;
  if (ts.isBinaryExpression(e) && e.operatorToken.kind === ts.SyntaxKind.CommaToken) e = e.right;
  if (ts.isIdentifier(e)) return e.text;
  if (ts.isPropertyAccessExpression(e)) return e.name.text;
  return undefined;
}

function serializerCalls(node: ts.Node): string[] {
  const names: string[] = [];
  const visit = (n: ts.Node) => {
    if (ts.isCallExpression(n)) {
      const name = calleeName(n);
      if (name?.endsWith('Serializer')) names.push(name);
    }
    ts.forEachChild(n, visit);
  };
  visit(node);
  return names;
}

function mentionsMap(node: ts.Node): boolean {
  let found = false;
  const visit = (n: ts.Node) => {
    if (ts.isPropertyAccessExpression(n) && n.name.text === 'map') found = true;
    if (!found) ts.forEachChild(n, visit);
  };
  visit(node);
  return found;
}

class SerializerModels {
  private readonly functions = new Map<string, ts.FunctionDeclaration>();
  private readonly cache = new Map<string, Shape>();

  constructor(files: string[]) {
    for (const file of files) {
      const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
      for (const st of sf.statements)
        if (ts.isFunctionDeclaration(st) && st.name?.text.endsWith('Serializer') && st.body)
          if (!this.functions.has(st.name.text)) this.functions.set(st.name.text, st);
    }
  }

  has(model: string): boolean {
    return this.functions.has(serializerName(model));
  }

  shape(model: string): Shape {
    return this.fromFunction(serializerName(model));
  }

  private fromFunction(name: string): Shape {
    const cached = this.cache.get(name);
    if (cached) return cached;
    const fn = this.functions.get(name);
    if (!fn) return ANY;
    if (/RecordSerializer$/.test(name)) return OPEN;
    if (/ArraySerializer$/.test(name)) {
      const inner = serializerCalls(fn.body!).find((n) => n !== name);
      const arr: Shape = { kind: 'array', element: inner ? this.fromFunction(inner) : ANY };
      this.cache.set(name, arr);
      return arr;
    }
    let props: Map<string, Shape> | undefined;
    const shape: Shape = { kind: 'object', name, open: false, props: () => (props ??= this.properties(fn)) };
    this.cache.set(name, shape);
    return shape;
  }

  private properties(fn: ts.FunctionDeclaration): Map<string, Shape> {
    const out = new Map<string, Shape>();
    const literals: ts.ObjectLiteralExpression[] = [];
    const visit = (n: ts.Node) => {
      if (ts.isReturnStatement(n) && n.expression && ts.isObjectLiteralExpression(n.expression))
        literals.push(n.expression);
      if (!ts.isFunctionLike(n) || n === fn) ts.forEachChild(n, visit);
    };
    visit(fn);
    if (literals.length === 0) {
      // A union (discriminated) serializer: the union of what its branches accept.
      for (const inner of serializerCalls(fn.body!)) this.merge(out, this.fromFunction(inner));
      return out;
    }
    for (const lit of literals)
      for (const p of lit.properties) {
        if (ts.isSpreadAssignment(p)) {
          for (const inner of serializerCalls(p.expression)) this.merge(out, this.fromFunction(inner));
          continue;
        }
        if (!ts.isPropertyAssignment(p)) continue;
        const key = ts.isIdentifier(p.name) || ts.isStringLiteral(p.name) ? p.name.text : undefined;
        if (key === undefined) continue;
        const inner = serializerCalls(p.initializer)[0];
        let value = inner ? this.fromFunction(inner) : ANY;
        if (inner && value.kind === 'object' && mentionsMap(p.initializer))
          value = { kind: 'array', element: value };
        if (!out.has(key)) out.set(key, value);
      }
    return out;
  }

  private merge(into: Map<string, Shape>, shape: Shape): void {
    if (shape.kind !== 'object') return;
    for (const [k, v] of shape.props()) if (!into.has(k)) into.set(k, v);
  }
}

function serializerName(model: string): string {
  return `${model[0]!.toLowerCase()}${model.slice(1)}Serializer`;
}

// ---- one entry point --------------------------------------------------------------------------

export interface ModelSource {
  has(model: string): boolean;
  shape(model: string): Shape;
}

const sources = new Map<string, ModelSource>();

/** The models of one `@azure/arm-*` package (mappers when it has them, else TypeSpec serializers). */
export function armModels(pkg: string): ModelSource {
  let source = sources.get(pkg);
  if (source) return source;
  const dir = packageDir(pkg);
  const mapperFile = MAPPER_FILES.map((f) => path.join(dir, f)).find((f) => existsSync(f));
  if (mapperFile) source = new MapperModels(loadMapperModule(mapperFile));
  else {
    const modelsDir = path.join(dir, 'dist', 'commonjs', 'models');
    if (!existsSync(modelsDir)) throw new Error(`${pkg}: neither mappers.js nor dist/commonjs/models found`);
    source = new SerializerModels(listFiles(modelsDir, 'models.js'));
  }
  sources.set(pkg, source);
  return source;
}
