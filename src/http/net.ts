/**
 * IP addresses and CIDR ranges for the webhook's allowlist, the trusted proxy and the rate limiter's keys. Every
 * address is held as 16 bytes, IPv4 in its IPv4-mapped IPv6 form (::ffff:a.b.c.d), so one comparison serves both
 * families and an IPv4 client seen through a dual-stack socket (::ffff:203.0.113.7) matches 203.0.113.0/24.
 */

export interface AddressRange {
  /** The network address, masked to the prefix. */
  readonly bytes: Uint8Array;
  /** Prefix length over the 128-bit form (an IPv4 /24 is 120). */
  readonly bits: number;
  /** As written in the configuration, for messages. */
  readonly text: string;
}

const IPV4_RE = /^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$/;
const HEX_GROUP_RE = /^[0-9a-fA-F]{1,4}$/;

function parseIpv4(text: string): number[] | undefined {
  // Leading zeros are refused: some parsers read "010" as octal 8.
  const match = IPV4_RE.exec(text);
  if (!match) return undefined;
  const octets = match.slice(1, 5).map(Number);
  return octets.every((o) => o <= 255) ? octets : undefined;
}

function parseIpv6(text: string): Uint8Array | undefined {
  if (text.length > 45) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groupsOf = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    const pieces = part.split(':');
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i] as string;
      if (i === pieces.length - 1 && piece.includes('.')) {
        const v4 = parseIpv4(piece);
        if (!v4) return undefined;
        out.push(((v4[0] as number) << 8) | (v4[1] as number), ((v4[2] as number) << 8) | (v4[3] as number));
      } else if (HEX_GROUP_RE.test(piece)) {
        out.push(Number.parseInt(piece, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = groupsOf(halves[0] as string);
  const tail = halves.length === 2 ? groupsOf(halves[1] as string) : [];
  if (!head || !tail) return undefined;
  // A dotted tail is only allowed at the very end.
  if (halves.length === 2 && (halves[0] as string).includes('.')) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array<number>(halves.length === 2 ? missing : 0).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return bytes;
}

function mappedIpv4(octets: number[]): Uint8Array {
  const bytes = new Uint8Array(16);
  bytes[10] = 0xff;
  bytes[11] = 0xff;
  bytes.set(octets, 12);
  return bytes;
}

function isMappedIpv4(bytes: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

/**
 * An IPv4 or IPv6 address as 16 bytes, or undefined when the text is not one. A zone (fe80::1%eth0) is dropped when
 * `allowZone` is set (addresses as sockets report them) and refused otherwise (configuration).
 */
export function parseAddress(text: string, options: { allowZone?: boolean } = {}): Uint8Array | undefined {
  let value = text;
  const zone = value.indexOf('%');
  if (zone >= 0) {
    if (!options.allowZone) return undefined;
    value = value.slice(0, zone);
  }
  const v4 = parseIpv4(value);
  if (v4) return mappedIpv4(v4);
  return value.includes(':') ? parseIpv6(value) : undefined;
}

/** "203.0.113.7", "203.0.113.0/24", "2001:db8::1", "2001:db8::/32" → a range; otherwise a message saying why not. */
export function parseRange(text: string): AddressRange | string {
  const slash = text.indexOf('/');
  const addressText = slash >= 0 ? text.slice(0, slash) : text;
  const bytes = parseAddress(addressText);
  if (!bytes) return `"${text}" is not an IPv4 or IPv6 address or CIDR range`;
  const v4 = parseIpv4(addressText) !== undefined;
  const max = v4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const prefixText = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText) || Number(prefixText) > max)
      return `"${text}": the prefix length must be 0 to ${max}`;
    prefix = Number(prefixText);
  }
  if (prefix === 0) return `"${text}" would match every address: list the addresses, or leave the variable unset`;
  const bits = v4 ? prefix + 96 : prefix;
  return { bytes: mask(bytes, bits), bits, text };
}

function mask(bytes: Uint8Array, bits: number): Uint8Array {
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, bits - 8 * i));
    out[i] = (bytes[i] as number) & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}

function inRange(address: Uint8Array, range: AddressRange): boolean {
  const full = range.bits >> 3;
  for (let i = 0; i < full; i++) if (address[i] !== range.bytes[i]) return false;
  const rest = range.bits & 7;
  if (rest === 0) return true;
  const m = (0xff << (8 - rest)) & 0xff;
  return ((address[full] as number) & m) === range.bytes[full];
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
    const bytes = parseAddress(address, { allowZone: true });
    return bytes !== undefined && ranges.some((range) => inRange(bytes, range));
  };
}

/**
 * The rate limiter's key for a source: an IPv4 address as itself (IPv4-mapped forms folded into it), an IPv6
 * address by its /64, since one IPv6 host commonly holds a whole /64 and could otherwise take a fresh address for
 * every request. Text that is not an address is kept (shortened) as its own key.
 */
export function sourceKey(address: string): string {
  const bytes = parseAddress(address, { allowZone: true });
  if (!bytes) return `?${address.slice(0, 64)}`;
  if (isMappedIpv4(bytes)) return Array.from(bytes.subarray(12)).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 8; i += 2) groups.push((((bytes[i] as number) << 8) | (bytes[i + 1] as number)).toString(16));
  return `${groups.join(':')}::/64`;
}
