/**
 * The F&O business-event envelope, the activation test message, the allow-list filter, the
 * de-duplication keys, and the per-entity record ids.
 */
import { describe, expect, it } from 'vitest';
import {
  businessEventSchema,
  dedupKeysOf,
  filterBusinessEvent,
  parseBusinessEventBody,
  parseWcfDate,
  type BusinessEventFacts,
} from '../../src/lib/finops/business-event';
import { parseAllowListSetting, parseEntityKeysSetting, recordIdOf } from '../../src/lib/finops/entity-keys';
import { AppError, ConfigError, ValidationError } from '../../src/lib/errors';
import type { EntityRow } from '../../src/lib/finops/parse';
import { FINOPS_SETTINGS, readFinopsSettings } from '../../src/lib/finops/settings';

const sample = (controlNumber: string, extra = '') =>
  `{"BusinessEventId":"DataExportBusinessEvent","BusinessEventLegalEntity":"USMF","ContextRecordSubject":"",` +
  `"ControlNumber":${controlNumber},"EventId":"{3C47A4CD-6EDC-4319-B893-3F862EED65FD}","EventTime":"/Date(1672408275000)/",` +
  `"EventTimeIso8601":"2022-12-30T13:51:15.2942742Z","InitiatingUserAADObjectId":"{410A2690-5EC2-42EE-9F2A-E75B4E324930}",` +
  `"MajorVersion":0,"MinorVersion":0,"ParentContextRecordSubjects":[],` +
  `"DownloadURL":"https://acct.blob.core.windows.net/dmf/export.zip?sv=2022&sig=SECRET","EntityName":"Customer groups"${extra}}`;

function eventOf(body: string) {
  const parsed = parseBusinessEventBody(body);
  if (parsed.kind !== 'event') throw new Error('expected an event');
  return parsed;
}

describe('envelope', () => {
  it('keeps a ControlNumber beyond 2^53 exact', () => {
    const { event, facts } = eventOf(sample('9223372036854775807'));
    expect(facts.controlNumber).toBe(9223372036854775807n);
    expect(event.ControlNumber).toBe('9223372036854775807');
    // 2^53 + 1 is where a JS number starts rounding.
    expect(eventOf(sample('9007199254740993')).facts.controlNumber).toBe(9007199254740993n);
    expect(eventOf(sample('5637611083')).facts.controlNumber).toBe(5637611083n);
  });

  it('accepts the control number as text too, and refuses fractions and values beyond 64 bits', () => {
    expect(eventOf(sample('"5637611083"')).facts.controlNumber).toBe(5637611083n);
    expect(() => parseBusinessEventBody(sample('1.5'))).toThrow(/ControlNumber: must be an integer/);
    expect(() => parseBusinessEventBody(sample('9223372036854775808'))).toThrow(
      /ControlNumber: must fit in 64 bits/,
    );
  });

  it('reads EventTime in its /Date(ms)/ form', () => {
    expect(eventOf(sample('1')).facts.eventTime).toEqual(new Date(1672408275000));
    expect(parseWcfDate('/Date(1672408275000+0100)/')).toEqual(new Date(1672408275000));
    expect(parseWcfDate('/Date(-2208988800000)/')).toEqual(new Date('1900-01-01T00:00:00Z'));
    expect(parseWcfDate('2022-12-30')).toBeUndefined();
    expect(() => parseBusinessEventBody(sample('1').replace('/Date(1672408275000)/', 'yesterday'))).toThrow(
      /EventTime: must be a WCF date/,
    );
  });

  it('keeps unknown fields, numbers exact, and the data-export fields', () => {
    const { event, facts } = eventOf(
      sample('1', ',"NewField":{"a":[1,2]},"Huge":123456789012345678901234567890'),
    );
    expect(event.NewField).toEqual({ a: [1, 2] });
    expect(event.Huge).toBe('123456789012345678901234567890');
    expect(event.MajorVersion).toBe(0);
    expect(facts).toMatchObject({
      businessEventId: 'DataExportBusinessEvent',
      eventId: '3c47a4cd-6edc-4319-b893-3f862eed65fd',
      entityName: 'Customer groups',
      legalEntity: 'USMF',
      downloadUrl: 'https://acct.blob.core.windows.net/dmf/export.zip?sv=2022&sig=SECRET',
    });
    // What the intake enqueues is JSON-safe and parses again to the same envelope.
    const again = businessEventSchema.parse(JSON.parse(JSON.stringify(event)));
    expect(again).toEqual(event);
  });

  it('recognises the endpoint-activation test message, even with ControlNumber long.MinValue and nothing else', () => {
    const test =
      '{"BusinessEventId":"BusinessEventsTestEndpointContract","BusinessEventLegalEntity":"001","ControlNumber":-9223372036854775808,"EventId":"8D1220EB-E514-4E35-844E-E062DEF0C05D"}';
    expect(parseBusinessEventBody(test)).toEqual({
      kind: 'activation',
      envelope: expect.objectContaining({
        BusinessEventId: 'BusinessEventsTestEndpointContract',
        ControlNumber: '-9223372036854775808',
      }),
    });
    expect(parseBusinessEventBody('{"BusinessEventId":"businesseventstestendpointcontract"}').kind).toBe(
      'activation',
    );
  });

  it('rejects what is not an event with one line per problem, never echoing values', () => {
    const cases: [string, RegExp][] = [
      ['', /not valid JSON/],
      ['{"a":', /not valid JSON/],
      ['[1]', /one JSON object/],
      ['{"BusinessEventId":"X","BusinessEventId":"Y"}', /not valid JSON.*Duplicate key/],
      ['['.repeat(50_000), /not valid JSON/],
      ['{}', /BusinessEventId: .*ControlNumber: .*EventId: /],
      ['{"BusinessEventId":"","ControlNumber":1,"EventId":"e"}', /BusinessEventId: must not be empty/],
    ];
    for (const [body, why] of cases) {
      let error: unknown;
      try {
        parseBusinessEventBody(body);
      } catch (e) {
        error = e;
      }
      expect(error, body.slice(0, 30)).toBeInstanceOf(ValidationError);
      expect((error as AppError).code).toBe('business_event_invalid');
      expect((error as AppError).message).toMatch(why);
    }
    const secret = sample('"not a number SECRET-VALUE"');
    expect(() => parseBusinessEventBody(secret)).toThrow(ValidationError);
    try {
      parseBusinessEventBody(secret);
    } catch (e) {
      expect(JSON.stringify({ m: (e as AppError).message, d: (e as AppError).details })).not.toMatch(
        /SECRET/,
      );
    }
    expect(() => parseBusinessEventBody(Buffer.from([0x7b, 0xff, 0x7d]))).toThrow(/not valid UTF-8/);
  });
});

describe('filter and de-duplication', () => {
  const facts = (over: Partial<BusinessEventFacts> = {}): BusinessEventFacts => ({
    ...eventOf(sample('5637611083')).facts,
    ...over,
  });
  const options = { allowedEventIds: ['DataExportBusinessEvent'], allowedEntities: ['Customer groups'] };

  it('accepts an allowed data-export event and says why it ignores the others', () => {
    expect(filterBusinessEvent(facts(), options)).toEqual({ action: 'accept' });
    expect(
      filterBusinessEvent(
        facts({ businessEventId: 'dataexportbusinessevent', entityName: 'CUSTOMER GROUPS' }),
        options,
      ),
    ).toEqual({ action: 'accept' });
    expect(
      filterBusinessEvent(facts({ businessEventId: 'SalesInvoicePostedBusinessEvent' }), options),
    ).toMatchObject({ action: 'ignore', code: 'event_id_not_allowed' });
    expect(filterBusinessEvent(facts({ downloadUrl: undefined }), options)).toMatchObject({
      action: 'ignore',
      code: 'not_a_data_export',
    });
    expect(filterBusinessEvent(facts({ entityName: 'Vendors' }), options)).toMatchObject({
      action: 'ignore',
      code: 'entity_not_allowed',
      reason: 'entity Vendors is not in FNO_ALLOWED_ENTITIES',
    });
    expect(
      filterBusinessEvent(facts({ entityName: 'Vendors' }), { ...options, allowedEntities: '*' }),
    ).toEqual({ action: 'accept' });
    const ignored = filterBusinessEvent(facts({ entityName: 'Vendors' }), options);
    expect(JSON.stringify(ignored)).not.toMatch(/SECRET|sig=/);
  });

  it('keys an event by its EventId and by its ControlNumber per entity', () => {
    const a = dedupKeysOf(facts());
    expect(a).toEqual({
      byEventId: 'fno-event:3c47a4cd-6edc-4319-b893-3f862eed65fd',
      byControlNumber: 'fno-control:customer%20groups:5637611083',
    });
    // The same event re-delivered with another GUID spelling is the same event.
    expect(
      dedupKeysOf(facts({ eventId: eventOf(sample('1').replace('{3C47A4CD', '{3c47a4cd')).facts.eventId }))
        .byEventId,
    ).toBe(a.byEventId);
    // Another entity with the same control number is another export.
    expect(dedupKeysOf(facts({ entityName: 'Vendors' })).byControlNumber).not.toBe(a.byControlNumber);
    for (const k of Object.values(a)) expect(k).not.toMatch(/[/\\#?]/);
  });
});

describe('entity keys', () => {
  const row = (fields: Record<string, string | null>, entity = 'Customer groups'): EntityRow => ({
    kind: 'row',
    entity,
    file: 'f.csv',
    line: 7,
    fields,
  });

  it('parses the flat setting and the JSON form, and names what is wrong', () => {
    const keys = parseEntityKeysSetting(
      'Customer groups=CustomerGroupId; Sales order lines V2=dataAreaId,SalesOrderNumber,LineNumber',
    );
    expect(keys.entities()).toEqual(['Customer groups', 'Sales order lines V2']);
    expect(keys.get('CUSTOMER GROUPS')?.fields).toEqual(['CustomerGroupId']);
    expect(parseEntityKeysSetting('{"Vendors":["VendorAccountNumber"]}').get('vendors')?.fields).toEqual([
      'VendorAccountNumber',
    ]);
    expect(parseEntityKeysSetting('').entities()).toEqual([]);
    for (const [bad, why] of [
      ['Customer groups', /has no "="/],
      ['Customer groups=', /a name is empty/],
      ['A=x;a=y', /listed twice/],
      ['A=x,X', /lists key field X twice/],
      ['{"A":[]}', /at least one key field/],
      ['{oops', /not valid JSON/],
    ] as const) {
      expect(() => parseEntityKeysSetting(bad)).toThrow(ConfigError);
      expect(() => parseEntityKeysSetting(bad)).toThrow(why);
    }
    expect(parseAllowListSetting('*')).toBe('*');
    expect(parseAllowListSetting(' A ; B;')).toEqual(['A', 'B']);
  });

  it('builds the record id from the key fields, matching column names case-insensitively', () => {
    const keys = parseEntityKeysSetting('Customer groups=CustomerGroupId;Lines=dataAreaId,Order');
    expect(recordIdOf(row({ CUSTOMERGROUPID: '10', DESCRIPTION: 'x' }), keys)).toEqual({
      ok: true,
      id: 'Customer groups:CustomerGroupId=10',
    });
    expect(recordIdOf(row({ DATAAREAID: 'usmf', ORDER: 'a;b=c:d%' }, 'lines'), keys)).toEqual({
      ok: true,
      id: 'Lines:dataAreaId=usmf;Order=a%3Bb%3Dc%3Ad%25',
    });
    // Different keys never give the same id.
    const one = recordIdOf(row({ dataAreaId: 'a;Order=b', Order: 'c' }, 'Lines'), keys);
    const two = recordIdOf(row({ dataAreaId: 'a', Order: 'b;Order=c' }, 'Lines'), keys);
    expect(one.ok && two.ok && one.id !== two.id).toBe(true);
  });

  it('reports a row missing a key field, or of an entity without keys, as malformed with its line', () => {
    const keys = parseEntityKeysSetting('Customer groups=CustomerGroupId');
    expect(recordIdOf(row({ DESCRIPTION: 'x' }), keys)).toEqual({
      ok: false,
      malformed: {
        kind: 'malformed',
        entity: 'Customer groups',
        file: 'f.csv',
        line: 7,
        error: 'key field CustomerGroupId is missing',
        raw: '{"DESCRIPTION":"x"}',
      },
    });
    expect(recordIdOf(row({ CustomerGroupId: '' }), keys)).toMatchObject({
      ok: false,
      malformed: { error: 'key field CustomerGroupId is empty' },
    });
    expect(recordIdOf(row({ CustomerGroupId: null }), keys)).toMatchObject({
      ok: false,
      malformed: { error: 'key field CustomerGroupId is empty' },
    });
    expect(recordIdOf(row({ X: '1' }, 'Vendors'), keys)).toMatchObject({
      ok: false,
      malformed: { line: 7, error: 'entity Vendors has no key fields configured (FNO_ENTITY_KEYS)' },
    });
  });
});

describe('settings', () => {
  it('defaults: any event id with a DownloadURL, the entities that have keys, blob storage hosts', () => {
    const s = readFinopsSettings({ FNO_ENTITY_KEYS: 'Customer groups=CustomerGroupId' });
    expect(s.filter).toEqual({ allowedEventIds: '*', allowedEntities: ['Customer groups'] });
    expect(s.download).toEqual({
      allowedHosts: ['*.blob.core.windows.net'],
      allowedPrivateCidrs: [],
      maxBytes: 512 * 1024 * 1024,
      timeoutMs: 30_000,
      maxRedirects: 3,
    });
    expect(s.api).toBeUndefined();
    expect(s.activityId).toBeUndefined();
    expect(FINOPS_SETTINGS.map((x) => x.name)).toContain('FNO_ACTIVITY_ID');
    expect(FINOPS_SETTINGS.filter((x) => x.secret).map((x) => x.name)).toEqual(['FNO_CLIENT_SECRET']);
  });

  it('reads every setting and derives the scope from the base URL', () => {
    const s = readFinopsSettings({
      FNO_ENTITY_KEYS: 'A=x;B=y',
      FNO_ALLOWED_EVENT_IDS: 'DataExportBusinessEvent',
      FNO_ALLOWED_ENTITIES: 'A',
      FNO_DOWNLOAD_ALLOWED_HOSTS: '*.blob.core.windows.net; files.example.com',
      FNO_DOWNLOAD_ALLOWED_PRIVATE_CIDRS: '10.20.0.0/16',
      FNO_DOWNLOAD_MAX_BYTES: '1000',
      FNO_PACKAGE_MAX_RATIO: '50',
      FNO_BASE_URL: 'https://contoso.operations.dynamics.com/',
      FNO_ACTIVITY_ID: '{7D6C2D5C-5D0F-4D1A-9A8E-0C1F5A2B3C4D}',
    });
    expect(s.filter).toEqual({ allowedEventIds: ['DataExportBusinessEvent'], allowedEntities: ['A'] });
    expect(s.download.allowedHosts).toEqual(['*.blob.core.windows.net', 'files.example.com']);
    expect(s.zipLimits.maxCompressionRatio).toBe(50);
    expect(s.api?.scope).toBe('https://contoso.operations.dynamics.com/.default');
  });

  it('names every problem, one line each', () => {
    let error: unknown;
    try {
      readFinopsSettings({
        FNO_ENTITY_KEYS: 'A=x',
        FNO_ALLOWED_ENTITIES: 'A;B',
        FNO_DOWNLOAD_MAX_BYTES: 'lots',
        FNO_DOWNLOAD_ALLOWED_HOSTS: 'https://x.com',
        FNO_BASE_URL: 'http://contoso.operations.dynamics.com',
        FNO_CLIENT_SECRET: 's3cret',
        FNO_ACTIVITY_ID: 'nope',
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      'FNO_ALLOWED_ENTITIES names B, which has no key fields in FNO_ENTITY_KEYS',
      'FNO_DOWNLOAD_MAX_BYTES must be a whole number',
      'FNO_DOWNLOAD_ALLOWED_HOSTS: "https://x.com" is not a host name or *.suffix',
      'FNO_BASE_URL must be an https URL',
      'FNO_CLIENT_SECRET needs FNO_TENANT_ID and FNO_CLIENT_ID',
      'FNO_ACTIVITY_ID must be the recurring data job activity id (a GUID)',
    ]);
    expect(JSON.stringify((error as ConfigError).problems)).not.toMatch(/s3cret/);
  });
});
