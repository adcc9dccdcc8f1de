/**
 * The business-event flow's app settings, validated with zod: a fragment for the one config
 * schema (the lead folds it in). Every setting has a safe default except the ones that name the
 * tenant's own things (entity keys, the F&O environment, the activity id).
 *
 * Test-only switches (loopback, extra CA) are NOT settings: see `UnsafeTestOnlyOptions`.
 */
import { z } from 'zod';
import { ConfigError } from '../errors';
import { filterOptionsOf, type BusinessEventFilterOptions } from './business-event';
import { DEFAULT_DOWNLOAD_MAX_BYTES } from './download';
import { parseAllowListSetting, parseEntityKeysSetting, type EntityKeys } from './entity-keys';
import { DEFAULT_ZIP_LIMITS, type ZipLimits } from './parse';

export interface FinopsSettingInfo {
  name: string;
  default: string;
  secret: boolean;
  description: string;
}

/** The settings, their defaults and descriptions (for the README table and local.settings). */
export const FINOPS_SETTINGS: readonly FinopsSettingInfo[] = [
  {
    name: 'FNO_ALLOWED_EVENT_IDS',
    default: '*',
    secret: false,
    description:
      'BusinessEventIds processed, separated by ";" ("*": any event that carries a DownloadURL). Others answer 202 and are ignored, logged and counted.',
  },
  {
    name: 'FNO_ALLOWED_ENTITIES',
    default: '(the entities of FNO_ENTITY_KEYS)',
    secret: false,
    description:
      'EntityNames processed, separated by ";" ("*": any). Every entity named here needs key fields in FNO_ENTITY_KEYS.',
  },
  {
    name: 'FNO_ENTITY_KEYS',
    default: '(none)',
    secret: false,
    description:
      'Key fields per entity: "Customer groups=CustomerGroupId; Sales order lines V2=dataAreaId,SalesOrderNumber,LineCreationSequenceNumber" (or a JSON object). A record is keyed by entity + these fields.',
  },
  {
    name: 'FNO_DOWNLOAD_ALLOWED_HOSTS',
    default: '*.blob.core.windows.net',
    secret: false,
    description: 'Hosts a DownloadURL may point to, separated by ";" ("*.suffix" for any name under suffix).',
  },
  {
    name: 'FNO_DOWNLOAD_ALLOWED_PRIVATE_CIDRS',
    default: '(none)',
    secret: false,
    description:
      'Private ranges a download may reach, separated by ";" (storage behind a private endpoint, e.g. 10.20.0.0/16). Loopback and link-local can never be opened.',
  },
  {
    name: 'FNO_DOWNLOAD_MAX_BYTES',
    default: String(DEFAULT_DOWNLOAD_MAX_BYTES),
    secret: false,
    description: 'Largest download accepted (bytes).',
  },
  {
    name: 'FNO_DOWNLOAD_TIMEOUT_MS',
    default: '30000',
    secret: false,
    description:
      'Longest wait for a response and longest pause inside a body (ms), for downloads and F&O API calls.',
  },
  {
    name: 'FNO_DOWNLOAD_MAX_REDIRECTS',
    default: '3',
    secret: false,
    description: 'Same-host redirects followed (a redirect to another host is always refused).',
  },
  {
    name: 'FNO_PACKAGE_MAX_ENTRIES',
    default: String(DEFAULT_ZIP_LIMITS.maxEntries),
    secret: false,
    description: 'Most entries in a data package.',
  },
  {
    name: 'FNO_PACKAGE_MAX_UNCOMPRESSED_BYTES',
    default: String(DEFAULT_ZIP_LIMITS.maxTotalUncompressedBytes),
    secret: false,
    description: 'Largest total uncompressed size of a data package (zip bomb cap).',
  },
  {
    name: 'FNO_PACKAGE_MAX_RATIO',
    default: String(DEFAULT_ZIP_LIMITS.maxCompressionRatio),
    secret: false,
    description: 'Largest compression ratio of one package entry above 1 MiB (zip bomb cap).',
  },
  {
    name: 'FNO_PACKAGE_TEMP_DIR',
    default: '(the OS temp folder)',
    secret: false,
    description:
      'Where a package is spooled while its table of contents is validated (needs up to FNO_DOWNLOAD_MAX_BYTES of disk).',
  },
  {
    name: 'FNO_BASE_URL',
    default: '(none)',
    secret: false,
    description:
      'The F&O environment, https://<env>.operations.dynamics.com. Needed for fresh URLs (package API) and polling.',
  },
  {
    name: 'FNO_SCOPE',
    default: '<FNO_BASE_URL origin>/.default',
    secret: false,
    description: 'Entra token scope for F&O.',
  },
  {
    name: 'FNO_TENANT_ID',
    default: '(none)',
    secret: false,
    description: 'Entra tenant of the app registration (client-secret auth).',
  },
  {
    name: 'FNO_CLIENT_ID',
    default: '(none)',
    secret: false,
    description:
      'App registration (or user-assigned managed identity) client id registered in F&O (System administration > Microsoft Entra applications).',
  },
  {
    name: 'FNO_CLIENT_SECRET',
    default: '(none: managed identity)',
    secret: true,
    description: 'Client secret (a Key Vault reference). Without it the managed identity is used.',
  },
  {
    name: 'FNO_ACTIVITY_ID',
    default: '(none: polling off)',
    secret: false,
    description:
      'Recurring data job activity id (GUID): set it to poll dequeue/ack instead of (or besides) business events.',
  },
];

const positiveInt = (name: string) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, `${name} must be a whole number`)
    .transform(Number)
    .refine((n) => n > 0 && Number.isSafeInteger(n), `${name} must be a positive whole number`);

const list = (v: string) =>
  v
    .split(/[;,]/)
    .map((s) => s.trim())
    .filter((s) => s !== '');

export interface FinopsSettings {
  filter: BusinessEventFilterOptions;
  entityKeys: EntityKeys;
  download: {
    allowedHosts: string[];
    allowedPrivateCidrs: string[];
    maxBytes: number;
    timeoutMs: number;
    maxRedirects: number;
  };
  zipLimits: ZipLimits;
  packageTempDir?: string;
  api?: { baseUrl: string; scope: string; tenantId?: string; clientId?: string; clientSecret?: string };
  activityId?: string;
}

/** Reads the FNO_* settings from a name → value map. Throws ConfigError, one line per problem. */
export function readFinopsSettings(env: Record<string, string | undefined>): FinopsSettings {
  const problems: string[] = [];
  const get = (name: string) => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v;
  };
  const num = (name: string, fallback: number): number => {
    const v = get(name);
    if (v === undefined) return fallback;
    const r = positiveInt(name).safeParse(v);
    if (!r.success) {
      problems.push(r.error.issues[0]!.message);
      return fallback;
    }
    return r.data;
  };
  const attempt = <T>(f: () => T): T | undefined => {
    try {
      return f();
    } catch (e) {
      if (e instanceof ConfigError) problems.push(...e.problems);
      else throw e;
      return undefined;
    }
  };

  const entityKeys =
    attempt(() => parseEntityKeysSetting(get('FNO_ENTITY_KEYS') ?? '')) ?? parseEntityKeysSetting('');
  const filter = attempt(() =>
    filterOptionsOf(
      parseAllowListSetting(get('FNO_ALLOWED_EVENT_IDS') ?? '*'),
      get('FNO_ALLOWED_ENTITIES') === undefined
        ? undefined
        : parseAllowListSetting(get('FNO_ALLOWED_ENTITIES')!),
      entityKeys,
    ),
  );
  const download = {
    allowedHosts: list(get('FNO_DOWNLOAD_ALLOWED_HOSTS') ?? '*.blob.core.windows.net'),
    allowedPrivateCidrs: list(get('FNO_DOWNLOAD_ALLOWED_PRIVATE_CIDRS') ?? ''),
    maxBytes: num('FNO_DOWNLOAD_MAX_BYTES', DEFAULT_DOWNLOAD_MAX_BYTES),
    timeoutMs: num('FNO_DOWNLOAD_TIMEOUT_MS', 30_000),
    maxRedirects: num('FNO_DOWNLOAD_MAX_REDIRECTS', 3),
  };
  for (const h of download.allowedHosts)
    if (!/^(\*\.)?[a-z0-9.-]+$/i.test(h) || h.startsWith('.'))
      problems.push(`FNO_DOWNLOAD_ALLOWED_HOSTS: "${h}" is not a host name or *.suffix`);
  const zipLimits: ZipLimits = {
    ...DEFAULT_ZIP_LIMITS,
    maxEntries: num('FNO_PACKAGE_MAX_ENTRIES', DEFAULT_ZIP_LIMITS.maxEntries),
    maxTotalUncompressedBytes: num(
      'FNO_PACKAGE_MAX_UNCOMPRESSED_BYTES',
      DEFAULT_ZIP_LIMITS.maxTotalUncompressedBytes,
    ),
    maxCompressionRatio: num('FNO_PACKAGE_MAX_RATIO', DEFAULT_ZIP_LIMITS.maxCompressionRatio),
  };

  let api: FinopsSettings['api'];
  const baseUrl = get('FNO_BASE_URL');
  if (baseUrl !== undefined) {
    let origin: string | undefined;
    try {
      const u = new URL(baseUrl);
      if (u.protocol !== 'https:') problems.push('FNO_BASE_URL must be an https URL');
      origin = u.origin;
    } catch {
      problems.push('FNO_BASE_URL is not a URL (expected https://<environment>.operations.dynamics.com)');
    }
    const clientSecret = get('FNO_CLIENT_SECRET');
    if (
      clientSecret !== undefined &&
      (get('FNO_TENANT_ID') === undefined || get('FNO_CLIENT_ID') === undefined)
    )
      problems.push('FNO_CLIENT_SECRET needs FNO_TENANT_ID and FNO_CLIENT_ID');
    api = {
      baseUrl,
      scope: get('FNO_SCOPE') ?? `${origin ?? baseUrl}/.default`,
      tenantId: get('FNO_TENANT_ID'),
      clientId: get('FNO_CLIENT_ID'),
      clientSecret,
    };
  }
  const activityId = get('FNO_ACTIVITY_ID');
  if (activityId !== undefined) {
    if (!/^\{?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}?$/i.test(activityId.trim()))
      problems.push('FNO_ACTIVITY_ID must be the recurring data job activity id (a GUID)');
    if (baseUrl === undefined)
      problems.push('FNO_ACTIVITY_ID needs FNO_BASE_URL (polling calls the F&O environment)');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    filter: filter!,
    entityKeys,
    download,
    zipLimits,
    packageTempDir: get('FNO_PACKAGE_TEMP_DIR'),
    api,
    activityId: activityId?.trim(),
  };
}
