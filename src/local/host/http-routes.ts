/**
 * Route templates of HTTP triggers, matched like the Functions host (ASP.NET routing subset):
 * literal segments (case-insensitive), `{name}`, `{name?}`, `{name:constraint}` (int, long,
 * bool, guid and alpha are checked; other constraints are accepted unchecked), `{*rest}`.
 */

interface Segment {
  kind: 'literal' | 'param' | 'catchAll';
  text: string;
  optional: boolean;
  constraint?: string;
}

export interface CompiledRoute<T> {
  template: string;
  segments: Segment[];
  methods: string[] | null;
  target: T;
}

export interface RouteMatch<T> {
  route: CompiledRoute<T>;
  params: Record<string, string>;
}

export function compileRoute<T>(template: string, methods: string[] | null, target: T): CompiledRoute<T> {
  const parts = template.split('/').filter((p) => p !== '');
  const segments = parts.map((part): Segment => {
    const m = /^\{(\*{1,2})?([A-Za-z_][A-Za-z0-9_]*)(?::([^}?=]+))?(\?)?\}$/.exec(part);
    if (!m) {
      if (part.includes('{')) throw new Error(`route "${template}": unsupported segment "${part}"`);
      return { kind: 'literal', text: part, optional: false };
    }
    const [, star, name, constraint, optional] = m;
    return {
      kind: star ? 'catchAll' : 'param',
      text: name!,
      optional: Boolean(optional) || Boolean(star),
      constraint: constraint?.toLowerCase(),
    };
  });
  return { template, segments, methods: methods?.map((x) => x.toUpperCase()) ?? null, target };
}

const CONSTRAINTS: Record<string, RegExp> = {
  int: /^-?\d+$/,
  long: /^-?\d+$/,
  bool: /^(true|false)$/i,
  guid: /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i,
  alpha: /^[A-Za-z]+$/,
};

/** Matches decoded path segments (without the route prefix) against a route. */
export function matchRoute<T>(route: CompiledRoute<T>, path: string[]): Record<string, string> | null {
  const params: Record<string, string> = {};
  let i = 0;
  for (const seg of route.segments) {
    if (seg.kind === 'catchAll') {
      if (i < path.length) params[seg.text] = path.slice(i).join('/');
      return params;
    }
    const value = path[i];
    if (value === undefined) {
      if (seg.optional) continue;
      return null;
    }
    if (seg.kind === 'literal') {
      if (value.toLowerCase() !== seg.text.toLowerCase()) return null;
    } else {
      const check = seg.constraint ? CONSTRAINTS[seg.constraint.replace(/\(.*$/, '')] : undefined;
      if (check && !check.test(value)) return null;
      params[seg.text] = value;
    }
    i++;
  }
  return i === path.length ? params : null;
}

/** Literal segments beat parameters, parameters beat optional ones, catch-alls come last. */
function precedence(route: CompiledRoute<unknown>): number[] {
  return route.segments.map((s) =>
    s.kind === 'literal' ? 0 : s.kind === 'catchAll' ? 3 : s.optional ? 2 : 1,
  );
}

export function sortRoutes<T>(routes: CompiledRoute<T>[]): CompiledRoute<T>[] {
  return [...routes].sort((a, b) => {
    const pa = precedence(a);
    const pb = precedence(b);
    for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
      const d = (pa[i] ?? -1) - (pb[i] ?? -1);
      if (d !== 0) return d;
    }
    return 0;
  });
}

export type RouteLookup<T> =
  | { kind: 'match'; match: RouteMatch<T> }
  | { kind: 'methodNotAllowed'; allowed: string[] }
  | { kind: 'notFound' };

export function findRoute<T>(routes: CompiledRoute<T>[], method: string, path: string[]): RouteLookup<T> {
  const allowed = new Set<string>();
  for (const route of routes) {
    const params = matchRoute(route, path);
    if (!params) continue;
    if (route.methods === null || route.methods.includes(method.toUpperCase()))
      return { kind: 'match', match: { route, params } };
    route.methods.forEach((m) => allowed.add(m));
  }
  return allowed.size > 0 ? { kind: 'methodNotAllowed', allowed: [...allowed] } : { kind: 'notFound' };
}
