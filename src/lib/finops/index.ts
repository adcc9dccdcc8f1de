/**
 * Dynamics 365 Finance & Operations: what the business-event flow, the webhook route and the
 * polling timer call. See docs/finops.md.
 */
export * from './business-event';
export * from './entity-keys';
export * from './settings';
export {
  SafeHttpClient,
  HostAllowList,
  safeUrlText,
  type SafeHttpOptions,
  type UnsafeTestOnlyOptions,
  type Resolver,
} from './safe-http';
export * from './download';
export * from './event-export';
export { FinOpsApiClient, type FinOpsApiOptions } from './api-client';
export * from './package-api';
export * from './recurring-integration';
export {
  parseExport,
  PackageRejectedError,
  DEFAULT_ZIP_LIMITS,
  type ParseExportOptions,
  type ExportFormat,
  type ParsedItem,
  type EntityRow,
  type MalformedRow,
  type ZipLimits,
} from './parse';
