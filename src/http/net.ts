/**
 * IP addresses and CIDR ranges for the webhook's allowlist, the trusted proxy and the rate limiter's keys.
 *
 * ipaddr.js reads the addresses (IPv6 with `::` and a dotted IPv4 tail, octets and groups in range) and compares
 * them against a prefix. What stays here is what that library leaves to its caller, or reads more loosely than an
 * allowlist may:
 * - One family. Every address is held as IPv6, IPv4 in its IPv4-mapped form (::ffff:a.b.c.d), so one comparison
 *   serves both and an IPv4 client seen through a dual-stack socket (::ffff:203.0.113.7) matches 203.0.113.0/24
 *   (ipaddr.js's `match` throws when the two families differ).
 * - Strict text. IPv4 only as four decimal parts without leading zeros, also as an IPv6 address's dotted tail; see
 *   `parseIpv4` and `parseIpv6` for what ipaddr.js would accept otherwise. Zones (fe80::1%eth0) only where sockets
 *   report them, never in configuration.
 * - The prefix length, refusing /0, the range kept as written and the messages naming it.
 * - The rate limiter's key.
 */
import ipaddr from 'ipaddr.js';

export interface AddressRange {
  /** An address of the range, IPv4 in its IPv4-mapped form; only its first `bits` bits are compared. */
  readonly network: ipaddr.IPv6;
  /** Prefix length over the 128-bit form (an IPv4 /24 is 120). */
  readonly bits: number;
  /** As written in the configuration, for messages. */
  readonly text: string;
}

/**
 * The longest IPv6 text, eight groups with a dotted tail (ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255). Longer text
 * is refused before ipaddr.js's patterns see it: their work grows with the square of the length, and a forwarded-for
 * header from a trusted proxy carries whatever the client wrote.
 */
const MAX_IPV6_LENGTH = 45;

function parseIpv4(text: string): ipaddr.IPv4 | undefined {
  // Not `IPv4.isValid`/`IPv4.parse` alone: they take inet_aton's forms too (0x7f.1 and 127.1 for 127.0.0.1, 010
  // read as octal 8), so a configured range could mean something other than it reads as.
  return ipaddr.IPv4.isValidFourPartDecimal(text) ? ipaddr.IPv4.parse(text) : undefined;
}

function parseIpv6(text: string): ipaddr.IPv6 | undefined {
  if (text.length > MAX_IPV6_LENGTH || text.includes('%')) return undefined;
  // ipaddr.js reads a dotted tail with a bare parseInt ("::ffff:010.0.0.1" is 10.0.0.1, "::ffff:0x7f.0.0.1" is
  // 127.0.0.1), and turns "::a.b.c.d" into the IPv4-mapped ::ffff:a.b.c.d, which would match the IPv4 client a.b.c.d;
  // RFC 4291 reads it as the (deprecated) IPv4-compatible address, which does not. So the tail is read by the strict
  // IPv4 rule and passed on as two hex groups.
  let value = text;
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (lastColon >= 0 && tail.includes('.')) {
    const v4 = parseIpv4(tail);
    if (!v4) return undefined;
    const [a, b, c, d] = v4.octets as [number, number, number, number];
    value = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  return ipaddr.IPv6.isValid(value) ? ipaddr.IPv6.parse(value) : undefined;
}

/** An address in the 128-bit form, and whether it was written as IPv4 (its prefix then counts from bit 96). */
function readAddress(text: string, allowZone: boolean): { address: ipaddr.IPv6; ipv4: boolean } | undefined {
  let value = text;
  const zone = value.indexOf('%');
  if (zone >= 0) {
    if (!allowZone) return undefined;
    // Dropped here rather than handed to ipaddr.js, which takes only letters and digits after the %: an interface
    // named br-1a2b or eth0.100 would make the address unreadable. The zone plays no part in matching.
    value = value.slice(0, zone);
  }
  const v4 = parseIpv4(value);
  if (v4) return { address: v4.toIPv4MappedAddress(), ipv4: true };
  const v6 = parseIpv6(value);
  return v6 && { address: v6, ipv4: false };
}

/**
 * An IPv4 or IPv6 address as 16 bytes (IPv4 in its IPv4-mapped form), or undefined when the text is not one. A zone
 * (fe80::1%eth0) is dropped when `allowZone` is set (addresses as sockets report them) and refused otherwise
 * (configuration).
 */
export function parseAddress(text: string, options: { allowZone?: boolean } = {}): Uint8Array | undefined {
  const read = readAddress(text, options.allowZone ?? false);
  return read && Uint8Array.from(read.address.toByteArray());
}

/** "203.0.113.7", "203.0.113.0/24", "2001:db8::1", "2001:db8::/32" → a range; otherwise a message saying why not. */
export function parseRange(text: string): AddressRange | string {
  const slash = text.indexOf('/');
  const read = readAddress(slash >= 0 ? text.slice(0, slash) : text, false);
  if (!read) return `"${text}" is not an IPv4 or IPv6 address or CIDR range`;
  const max = read.ipv4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    // Read here, not by ipaddr.js's parseCIDR, which takes "/08" (or "/008") as 8.
    const prefixText = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText) || Number(prefixText) > max)
      return `"${text}": the prefix length must be 0 to ${max}`;
    prefix = Number(prefixText);
  }
  if (prefix === 0) return `"${text}" would match every address: list the addresses, or leave the variable unset`;
  return { network: read.address, bits: read.ipv4 ? prefix + 96 : prefix, text };
}

/**
 * A comma-separated list of addresses and ranges, each validated: the ranges, or one message per bad entry (naming
 * the entry by its position and text; these are addresses, never secrets).
 */
export function parseRangeList(text: string): { ranges: AddressRange[]; problems: string[] } {
  const ranges: AddressRange[] = [];
  const problems: string[] = [];
  text.split(',').forEach((raw, index) => {
    const entry = raw.trim();
    if (entry === '') {
      problems.push(`entry ${index + 1} is empty`);
      return;
    }
    const range = parseRange(entry);
    if (typeof range === 'string') problems.push(range);
    else ranges.push(range);
  });
  return { ranges, problems };
}

/** Whether an address (as a socket or fastify reports it) lies in any of the ranges. Anything unparsable: no. */
export function addressMatcher(ranges: readonly AddressRange[]): (address: string | undefined) => boolean {
  return (address) => {
    if (address === undefined || ranges.length === 0) return false;
    const read = readAddress(address, true);
    return read !== undefined && ranges.some((range) => read.address.match(range.network, range.bits));
  };
}

/**
 * The rate limiter's key for a source: an IPv4 address as itself (IPv4-mapped forms folded into it), an IPv6
 * address by its /64, since one IPv6 host commonly holds a whole /64 and could otherwise take a fresh address for
 * every request. Text that is not an address is kept (shortened) as its own key.
 */
export function sourceKey(address: string): string {
  const read = readAddress(address, true);
  if (!read) return `?${address.slice(0, 64)}`;
  if (read.address.isIPv4MappedAddress()) return read.address.toIPv4Address().toString();
  return `${new ipaddr.IPv6([...read.address.parts.slice(0, 4), 0, 0, 0, 0]).toString()}/64`;
}
