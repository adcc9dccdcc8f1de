/**
 * Which app setting names the configuration knows. Flat names (`SYNC_SCHEDULE`) are known when the
 * schema lists them; per-flow settings use the Functions convention for hierarchical settings,
 * `Flows__<flow>__<Key>` (`__` is the hierarchy separator on Linux and Windows), and are known
 * when `<Key>` is a known per-flow key, whatever the flow's name. Used by the settings-consistency
 * test to check the Bicep app settings; the config module can use the same rule.
 */

/** `Flows__<flow>__<Key>`: a flow name of letters, digits and hyphens; a key of letters, digits and `_`. */
export const FLOW_SETTING_PATTERN = /^Flows__([A-Za-z0-9][A-Za-z0-9-]{0,39})__([A-Za-z][A-Za-z0-9_]*)$/;

export interface FlowSettingName {
  flow: string;
  key: string;
}

/** Splits `Flows__<flow>__<Key>`; undefined for any other name. */
export function parseFlowSettingName(name: string): FlowSettingName | undefined {
  const m = FLOW_SETTING_PATTERN.exec(name);
  return m ? { flow: m[1]!, key: m[2]! } : undefined;
}

export interface KnownSettingNames {
  /** Flat setting names of the schema. */
  settings: Iterable<string>;
  /** Keys a flow's settings may have (`ViewUrl`, `Schedule`, ...). */
  perFlowKeys: Iterable<string>;
}

/** True when the configuration reads a setting of this name. */
export function isKnownSettingName(name: string, known: KnownSettingNames): boolean {
  if (new Set(known.settings).has(name)) return true;
  const flow = parseFlowSettingName(name);
  return flow !== undefined && new Set(known.perFlowKeys).has(flow.key);
}
