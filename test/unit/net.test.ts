import { describe, expect, it } from 'vitest';
import {
  addressMatcher,
  parseAddress,
  parseRange,
  parseRangeList,
  sourceKey,
  type AddressRange,
} from '../../src/http/net.ts';

function ranges(...texts: string[]): AddressRange[] {
  const { ranges: parsed, problems } = parseRangeList(texts.join(','));
  expect(problems).toEqual([]);
  return parsed;
}

describe('address parsing', () => {
  it('reads IPv4 and IPv6 in their usual forms, IPv4 as its IPv4-mapped form', () => {
    expect(parseAddress('203.0.113.7')).toEqual(parseAddress('::ffff:203.0.113.7'));
    expect(parseAddress('::ffff:203.0.113.7')).toEqual(parseAddress('0:0:0:0:0:ffff:cb00:7107'));
    expect(parseAddress('2001:db8::1')).toEqual(parseAddress('2001:0db8:0000:0000:0000:0000:0000:0001'));
    expect(parseAddress('::')).toEqual(new Uint8Array(16));
    expect(parseAddress('::1')?.[15]).toBe(1);
    expect(parseAddress('1:2:3:4:5:6:7::')).toBeDefined();
    expect(parseAddress('::2:3:4:5:6:7:8')).toBeDefined();
  });

  it('refuses what is not an address', () => {
    for (const bad of [
      '',
      '1.2.3',
      '1.2.3.4.5',
      '256.1.1.1',
      '01.2.3.4',
      '1.2.3.4 ',
      ' 1.2.3.4',
      'a.b.c.d',
      '1:2:3:4:5:6:7:8:9',
      '1::2::3',
      ':::',
      ':1:2:3:4:5:6:7',
      '1:2:3:4:5:6:7:8::',
      '12345::',
      'g::1',
      '1.2.3.4::',
      'localhost',
      '1.2.3.4/24',
    ]) {
      expect(parseAddress(bad), bad).toBeUndefined();
    }
  });

  it('drops a zone only for addresses as sockets report them, never in configuration', () => {
    expect(parseAddress('fe80::1%eth0')).toBeUndefined();
    expect(parseAddress('fe80::1%eth0', { allowZone: true })).toEqual(parseAddress('fe80::1'));
    expect(typeof parseRange('fe80::1%eth0')).toBe('string');
  });
});

describe('forms other parsers accept, refused here', () => {
  it("inet_aton's IPv4 forms (hex, octal, fewer than four parts, one number) are not addresses, nor ranges", () => {
    for (const bad of [
      '0x7f.0.0.1',
      '0x7f.1',
      '127.1',
      '127.0.1',
      '2130706433',
      '0177.0.0.1',
      '010.0.0.1',
      '1.2.3.04',
    ]) {
      expect(parseAddress(bad), bad).toBeUndefined();
      expect(parseAddress(bad, { allowZone: true }), bad).toBeUndefined();
      expect(parseRange(`${bad}/32`), bad).toBe(`"${bad}/32" is not an IPv4 or IPv6 address or CIDR range`);
    }
  });

  it('an IPv6 address with a dotted tail takes only a strict IPv4 tail', () => {
    expect(parseAddress('1:2:3:4:5:6:1.2.3.4')).toEqual(parseAddress('1:2:3:4:5:6:102:304'));
    for (const bad of [
      '::ffff:010.0.0.1',
      '::ffff:0x7f.0.0.1',
      '::ffff:00001.2.3.4',
      '::ffff:1.2.3',
      '::ffff:256.0.0.1',
      '1:2:3:4:5:6:7:1.2.3.4',
      '1.2.3.4:1::',
    ]) {
      expect(parseAddress(bad), bad).toBeUndefined();
    }
  });

  it('::a.b.c.d is the IPv4-compatible address of RFC 4291, not the IPv4-mapped one: it never matches the IPv4 client', () => {
    expect(parseAddress('::203.0.113.7')).toEqual(parseAddress('::cb00:7107'));
    expect(addressMatcher(ranges('::203.0.113.7'))('203.0.113.7')).toBe(false);
    expect(addressMatcher(ranges('203.0.113.7'))('::203.0.113.7')).toBe(false);
  });

  it('zones: any zone is dropped from a socket address, none is taken in configuration', () => {
    for (const zoned of ['fe80::1%eth0', 'fe80::1%br-1a2b', 'fe80::1%eth0.100', 'fe80::1%3']) {
      expect(parseAddress(zoned, { allowZone: true }), zoned).toEqual(parseAddress('fe80::1'));
      expect(parseAddress(zoned), zoned).toBeUndefined();
      expect(parseRange(zoned), zoned).toBe(`"${zoned}" is not an IPv4 or IPv6 address or CIDR range`);
      expect(parseRange(`${zoned}/64`), zoned).toMatch(/is not an IPv4 or IPv6 address/);
    }
    expect(addressMatcher(ranges('fe80::/64'))('fe80::1%eth0')).toBe(true);
    expect(parseRangeList('10.0.0.1, fe80::1%eth0').problems).toEqual([
      '"fe80::1%eth0" is not an IPv4 or IPv6 address or CIDR range',
    ]);
  });

  it('text longer than any address is refused', () => {
    expect(parseAddress('ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255')).toBeDefined();
    expect(parseAddress('0ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255')).toBeUndefined();
    expect(parseAddress(`${'1:'.repeat(50_000)}1`)).toBeUndefined();
    expect(addressMatcher(ranges('::/1'))('1:'.repeat(50_000))).toBe(false);
  });
});

describe('CIDR ranges', () => {
  it('match the addresses inside and nothing outside, at every kind of boundary', () => {
    const match = addressMatcher(
      ranges('10.0.0.0/8', '192.168.1.128/25', '203.0.113.7', '2001:db8:abcd::/48', '2001:db8:ffff::1'),
    );
    for (const inside of [
      '10.0.0.0',
      '10.255.255.255',
      '192.168.1.128',
      '192.168.1.255',
      '203.0.113.7',
      '2001:db8:abcd::',
      '2001:db8:abcd:ffff:ffff:ffff:ffff:ffff',
      '2001:db8:ffff::1',
    ]) {
      expect(match(inside), inside).toBe(true);
    }
    for (const outside of [
      '11.0.0.0',
      '9.255.255.255',
      '192.168.1.127',
      '192.168.2.128',
      '203.0.113.8',
      '203.0.113.6',
      '2001:db8:abce::',
      '2001:db8:ffff::2',
      '::1',
      'not an address',
      '',
      undefined,
    ]) {
      expect(match(outside), String(outside)).toBe(false);
    }
  });

  it('an IPv4 range matches the IPv4-mapped form a dual-stack socket reports, and IPv6 ranges never catch IPv4 by accident', () => {
    const match = addressMatcher(ranges('203.0.113.0/24'));
    expect(match('::ffff:203.0.113.99')).toBe(true);
    expect(match('::ffff:203.0.114.1')).toBe(false);
    expect(addressMatcher(ranges('2001:db8::/32'))('203.0.113.1')).toBe(false);
    expect(addressMatcher(ranges('::ffff:0:0/96'))('198.51.100.1')).toBe(true);
  });

  it('prefixes that do not fall on a byte: /25, /31, /33 (IPv6), /127', () => {
    expect(addressMatcher(ranges('198.51.100.2/31'))('198.51.100.3')).toBe(true);
    expect(addressMatcher(ranges('198.51.100.2/31'))('198.51.100.4')).toBe(false);
    expect(addressMatcher(ranges('2001:db8:8000::/33'))('2001:db8:ffff::1')).toBe(true);
    expect(addressMatcher(ranges('2001:db8:8000::/33'))('2001:db8:7fff::1')).toBe(false);
    expect(addressMatcher(ranges('::2/127'))('::3')).toBe(true);
    expect(addressMatcher(ranges('::2/127'))('::4')).toBe(false);
  });

  it('host bits in a range are masked off, as usual (192.168.1.1/24 is 192.168.1.0/24)', () => {
    expect(addressMatcher(ranges('192.168.1.1/24'))('192.168.1.200')).toBe(true);
  });

  it('refuses bad prefixes, a /0 (every address), and empty entries, naming each', () => {
    expect(parseRange('10.0.0.0/33')).toMatch(/prefix length must be 0 to 32/);
    expect(parseRange('2001:db8::/129')).toMatch(/prefix length must be 0 to 128/);
    expect(parseRange('10.0.0.0/')).toMatch(/prefix length/);
    expect(parseRange('10.0.0.0/08')).toMatch(/prefix length/);
    expect(parseRange('10.0.0.0/-1')).toMatch(/prefix length/);
    expect(parseRange('0.0.0.0/0')).toMatch(/would match every address/);
    expect(parseRange('::/0')).toMatch(/would match every address/);
    expect(parseRangeList('10.0.0.1,,10.0.0.300, 10.0.0.2 ').problems).toEqual([
      'entry 2 is empty',
      '"10.0.0.300" is not an IPv4 or IPv6 address or CIDR range',
    ]);
  });
});

describe('rate limiter keys', () => {
  it('an IPv4 source is itself, mapped or not; an IPv6 source is its /64', () => {
    expect(sourceKey('203.0.113.7')).toBe('203.0.113.7');
    expect(sourceKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(sourceKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(sourceKey('2001:db8:1:2:bbbb:cccc:dddd:eeee')).toBe('2001:db8:1:2::/64');
    expect(sourceKey('2001:db8:1:3::1')).not.toBe(sourceKey('2001:db8:1:2::1'));
    expect(sourceKey('2001:db8::1')).toBe('2001:db8::/64');
    expect(sourceKey('fe80::1%eth0')).toBe('fe80::/64');
    expect(sourceKey('garbage')).toBe('?garbage');
    expect(sourceKey('x'.repeat(500)).length).toBeLessThanOrEqual(65);
  });
});
