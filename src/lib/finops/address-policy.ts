/**
 * Which IP addresses a download may connect to. A URL that arrives in a webhook must not make the
 * app reach its own network (SSRF): loopback, private ranges, link-local (169.254.169.254 is the
 * cloud metadata service), CGNAT, multicast, unspecified, documentation and reserved ranges, and
 * IPv6 forms that embed an IPv4 address (IPv4-mapped, NAT64, 6to4, Teredo) are refused.
 *
 * Two ways to open a door, both explicit:
 * - `allowedPrivateCidrs` (production setting FNO_DOWNLOAD_ALLOWED_PRIVATE_CIDRS): for storage
 *   reached through a private endpoint, whose name resolves to a 10.x address inside the VNet.
 *   Only private (RFC 1918), CGNAT and unique-local ranges can be opened this way, never loopback,
 *   link-local, multicast or unspecified.
 * - `allowLoopback` (tests only, never from configuration): the loopback simulators.
 */
import { BlockList, isIP } from 'node:net';
import { ConfigError } from '../errors';

type Family = 'ipv4' | 'ipv6';
interface Range {
  net: string;
  prefix: number;
  family: Family;
  why: string;
  /** Can FNO_DOWNLOAD_ALLOWED_PRIVATE_CIDRS open (part of) it? */
  openable?: boolean;
}

const RANGES: Range[] = [
  { net: '0.0.0.0', prefix: 8, family: 'ipv4', why: 'unspecified ("this network")' },
  { net: '10.0.0.0', prefix: 8, family: 'ipv4', why: 'private', openable: true },
  { net: '100.64.0.0', prefix: 10, family: 'ipv4', why: 'carrier-grade NAT', openable: true },
  { net: '127.0.0.0', prefix: 8, family: 'ipv4', why: 'loopback' },
  { net: '169.254.0.0', prefix: 16, family: 'ipv4', why: 'link-local' },
  { net: '172.16.0.0', prefix: 12, family: 'ipv4', why: 'private', openable: true },
  { net: '192.0.0.0', prefix: 24, family: 'ipv4', why: 'IETF protocol assignments' },
  { net: '192.0.2.0', prefix: 24, family: 'ipv4', why: 'documentation' },
  { net: '192.88.99.0', prefix: 24, family: 'ipv4', why: '6to4 relay' },
  { net: '192.168.0.0', prefix: 16, family: 'ipv4', why: 'private', openable: true },
  { net: '198.18.0.0', prefix: 15, family: 'ipv4', why: 'benchmarking' },
  { net: '198.51.100.0', prefix: 24, family: 'ipv4', why: 'documentation' },
  { net: '203.0.113.0', prefix: 24, family: 'ipv4', why: 'documentation' },
  { net: '224.0.0.0', prefix: 4, family: 'ipv4', why: 'multicast' },
  { net: '240.0.0.0', prefix: 4, family: 'ipv4', why: 'reserved or broadcast' },
  { net: '::', prefix: 128, family: 'ipv6', why: 'unspecified' },
  { net: '::1', prefix: 128, family: 'ipv6', why: 'loopback' },
  { net: '::ffff:0:0', prefix: 96, family: 'ipv6', why: 'IPv4-mapped' },
  { net: '::', prefix: 96, family: 'ipv6', why: 'IPv4-compatible (deprecated)' },
  { net: '64:ff9b::', prefix: 96, family: 'ipv6', why: 'NAT64 (embeds IPv4)' },
  { net: '64:ff9b:1::', prefix: 48, family: 'ipv6', why: 'local NAT64 (embeds IPv4)' },
  { net: '100::', prefix: 64, family: 'ipv6', why: 'discard-only' },
  { net: '2001::', prefix: 32, family: 'ipv6', why: 'Teredo (embeds IPv4)' },
  { net: '2001:db8::', prefix: 32, family: 'ipv6', why: 'documentation' },
  { net: '2002::', prefix: 16, family: 'ipv6', why: '6to4 (embeds IPv4)' },
  { net: 'fc00::', prefix: 7, family: 'ipv6', why: 'unique local (private)', openable: true },
  { net: 'fe80::', prefix: 10, family: 'ipv6', why: 'link-local' },
  { net: 'fec0::', prefix: 10, family: 'ipv6', why: 'site-local (deprecated)' },
  { net: 'ff00::', prefix: 8, family: 'ipv6', why: 'multicast' },
];

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

const BLOCKS = RANGES.map((r) => {
  const b = new BlockList();
  b.addSubnet(r.net, r.prefix, r.family);
  return { range: r, block: b };
});

export interface AddressPolicyOptions {
  /** CIDRs inside private ranges that may be reached (private endpoints). */
  allowedPrivateCidrs?: readonly string[];
  /** TESTS ONLY: allow loopback addresses (the local simulators). */
  allowLoopback?: boolean;
}

export class AddressPolicy {
  private readonly opened = new BlockList();
  private readonly allowLoopback: boolean;

  constructor(o: AddressPolicyOptions = {}) {
    this.allowLoopback = o.allowLoopback === true;
    const problems: string[] = [];
    for (const cidr of o.allowedPrivateCidrs ?? []) {
      const parsed = parseCidr(cidr);
      if (!parsed) {
        problems.push(`FNO_DOWNLOAD_ALLOWED_PRIVATE_CIDRS: "${cidr}" is not a CIDR such as 10.1.0.0/16`);
        continue;
      }
      // The whole CIDR must lie inside one openable range.
      const inside = RANGES.some(
        (r) =>
          r.openable &&
          r.family === parsed.family &&
          parsed.prefix >= r.prefix &&
          BLOCKS.find((b) => b.range === r)!.block.check(parsed.net, parsed.family),
      );
      if (!inside) {
        problems.push(
          `FNO_DOWNLOAD_ALLOWED_PRIVATE_CIDRS: "${cidr}" is not inside a private range (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7)`,
        );
        continue;
      }
      this.opened.addSubnet(parsed.net, parsed.prefix, parsed.family);
    }
    if (problems.length > 0) throw new ConfigError(problems);
  }

  /** Why an address may not be reached, or undefined when it may. */
  refusal(address: string): string | undefined {
    const family = familyOf(address);
    if (!family) return 'not an IP address';
    if (this.allowLoopback && LOOPBACK.check(address, family)) return undefined;
    const hit = BLOCKS.find((b) => b.range.family === family && b.block.check(address, family));
    if (!hit) return undefined;
    if (hit.range.openable && this.opened.check(address, family)) return undefined;
    return hit.range.why;
  }
}

export function familyOf(address: string): Family | undefined {
  const v = isIP(address);
  return v === 4 ? 'ipv4' : v === 6 ? 'ipv6' : undefined;
}

function parseCidr(text: string): { net: string; prefix: number; family: Family } | undefined {
  const m = /^\s*([^/\s]+)\/(\d{1,3})\s*$/.exec(text);
  if (!m) return undefined;
  const family = familyOf(m[1]!);
  const prefix = Number(m[2]);
  if (!family || prefix > (family === 'ipv4' ? 32 : 128)) return undefined;
  return { net: m[1]!, prefix, family };
}
