import { createHash } from 'node:crypto';
import { describe, it, expect } from 'vitest';
import { getAddress, isAddress } from 'viem';
import { ADDRESS_FORMATS, checkAddress, type AddressFormat } from '../../src/channels/address.ts';

// ---------------------------------------------------------------------------
// Independent encoders used to build valid vectors from known payloads. They are
// written differently from the decoders under test (BigInt base58, table CRC) so
// a shared mistake is unlikely.
// ---------------------------------------------------------------------------

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

function base58Encode(bytes: Uint8Array): string {
  let n = BigInt('0x' + (Buffer.from(bytes).toString('hex') || '0'));
  let out = '';
  while (n > 0n) {
    out = B58[Number(n % 58n)] + out;
    n /= 58n;
  }
  for (const byte of bytes) {
    if (byte !== 0) break;
    out = '1' + out;
  }
  return out;
}

function dsha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(createHash('sha256').update(data).digest()).digest();
}

function base58CheckEncode(version: number, hash: Uint8Array): string {
  const payload = Buffer.concat([Buffer.from([version]), hash]);
  return base58Encode(Buffer.concat([payload, dsha256(payload).subarray(0, 4)]));
}

/** Deterministic pseudo-random bytes so vectors are stable across runs. */
function seededBytes(seed: string, length: number): Buffer {
  let out = Buffer.alloc(0);
  let counter = 0;
  while (out.length < length) {
    out = Buffer.concat([out, createHash('sha256').update(`${seed}:${counter++}`).digest()]);
  }
  return out.subarray(0, length);
}

const BECH32_CHARS = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';

function polymod(values: number[]): number {
  const gen = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
  let chk = 1;
  for (const v of values) {
    const b = chk >>> 25;
    chk = (((chk & 0x1ffffff) << 5) ^ v) >>> 0;
    for (let i = 0; i < 5; i++) if ((b >>> i) & 1) chk = (chk ^ gen[i]!) >>> 0;
  }
  return chk;
}

function segwitEncode(hrp: string, version: number, program: Uint8Array, variant: 'bech32' | 'bech32m'): string {
  const words: number[] = [version];
  let acc = 0;
  let bits = 0;
  for (const byte of program) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      words.push((acc >> bits) & 31);
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) words.push((acc << (5 - bits)) & 31);
  const expanded = [...[...hrp].map((c) => c.charCodeAt(0) >> 5), 0, ...[...hrp].map((c) => c.charCodeAt(0) & 31)];
  const constant = variant === 'bech32' ? 1 : 0x2bc830a3;
  const mod = polymod([...expanded, ...words, 0, 0, 0, 0, 0, 0]) ^ constant;
  const checksum = Array.from({ length: 6 }, (_, i) => (mod >>> (5 * (5 - i))) & 31);
  return hrp + '1' + [...words, ...checksum].map((w) => BECH32_CHARS[w]).join('');
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n << 8;
  for (let k = 0; k < 8; k++) c = c & 0x8000 ? (c << 1) ^ 0x1021 : c << 1;
  return c & 0xffff;
});

function crc16Table(data: Uint8Array): number {
  let crc = 0;
  for (const byte of data) crc = ((crc << 8) ^ CRC_TABLE[((crc >> 8) ^ byte) & 0xff]!) & 0xffff;
  return crc;
}

function tonFriendly(flag: number, workchain: number, hash: Uint8Array, alphabet: 'base64' | 'base64url'): string {
  const body = Buffer.concat([Buffer.from([flag, workchain & 0xff]), hash]);
  const crc = Buffer.alloc(2);
  crc.writeUInt16BE(crc16Table(body));
  return Buffer.concat([body, crc]).toString(alphabet);
}

/** Replaces the character at `index` with a different one from the same alphabet. */
function mutate(address: string, index: number, alphabet: string): string {
  const current = address[index]!;
  const replacement = [...alphabet].find((c) => c !== current && c.toLowerCase() !== current.toLowerCase())!;
  return address.slice(0, index) + replacement + address.slice(index + 1);
}

function expectValid(format: AddressFormat, address: string): void {
  expect(checkAddress(format, address), `${format} ${address}`).toBeNull();
}

function expectInvalid(format: AddressFormat, address: string, reason?: RegExp): void {
  const result = checkAddress(format, address);
  expect(result, `${format} ${address}`).toBeTypeOf('string');
  if (reason) expect(result).toMatch(reason);
}

// ---------------------------------------------------------------------------

describe('test helpers', () => {
  it('CRC16-XMODEM table implementation matches the standard check value', () => {
    expect(crc16Table(Buffer.from('123456789'))).toBe(0x31c3);
  });

  it('base58check encoder reproduces the genesis address from its hash160', () => {
    const hash = Buffer.from('62e907b15cbf27d5425399ebf6f0fb50ebb88f18', 'hex');
    expect(base58CheckEncode(0x00, hash)).toBe('1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa');
  });

  it('segwit encoder reproduces the BIP-173 and BIP-350 vectors', () => {
    const p2wpkh = Buffer.from('751e76e8199196d454941c45d1b3a323f1433bd6', 'hex');
    expect(segwitEncode('bc', 0, p2wpkh, 'bech32')).toBe('bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4');
    const taproot = Buffer.from('79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798', 'hex');
    expect(segwitEncode('bc', 1, taproot, 'bech32m')).toBe(
      'bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0',
    );
  });
});

describe('any format', () => {
  const btc = '1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa';

  it.each(ADDRESS_FORMATS)('%s rejects empty input', (format) => {
    expectInvalid(format, '', /empty/);
  });

  it.each(ADDRESS_FORMATS)('%s rejects input longer than 128 characters', (format) => {
    expectInvalid(format, '1'.repeat(129), /longer than 128/);
  });

  it.each([` ${btc}`, `${btc} `, `${btc}\n`, `\t${btc}`])('rejects surrounding whitespace %j', (address) => {
    expectInvalid('btc', address, /whitespace/);
  });

  it('rejects non-ASCII look-alikes', () => {
    // Cyrillic "А" (U+0410) in place of the Latin "A".
    expectInvalid('btc', '1\u04101zP1eP5QGefi2DMPTfTL5SLmv7DivfNa', /non-ASCII/);
    expectInvalid('evm', '0x8ba1f109551bD432803012645Ac136ddd64DB\u041072', /non-ASCII/);
  });
});

describe('evm', () => {
  const known = '0x8ba1f109551bD432803012645Ac136ddd64DBA72';
  const generated = getAddress('0x' + seededBytes('evm', 20).toString('hex'));

  it('accepts checksummed addresses', () => {
    expectValid('evm', known);
    expectValid('evm', generated);
    expectValid('evm', getAddress('0xd8da6bf26964af9d7eed9e03e53415d37aa96045'));
  });

  it('accepts single-case addresses (no checksum to verify)', () => {
    expectValid('evm', known.toLowerCase());
    expectValid('evm', '0x' + known.slice(2).toUpperCase());
    expectValid('evm', generated.toLowerCase());
  });

  it('viem strict isAddress agrees on correct and broken mixed-case checksums', () => {
    const broken = known.replace('bD4', 'bd4');
    expect(isAddress(known, { strict: true })).toBe(true);
    expect(isAddress(broken, { strict: true })).toBe(false);
    expectInvalid('evm', broken, /EIP-55 checksum does not match/);
  });

  it('rejects a mixed-case address with one letter case flipped', () => {
    const index = [...generated].findIndex((c, i) => i > 1 && /[a-f]/.test(c));
    const flipped = generated.slice(0, index) + generated[index]!.toUpperCase() + generated.slice(index + 1);
    expectInvalid('evm', flipped, /EIP-55/);
  });

  it('rejects the zero address', () => {
    expectInvalid('evm', '0x0000000000000000000000000000000000000000', /zero address/);
  });

  it.each([
    ['missing 0x', known.slice(2)],
    ['uppercase 0X', '0X' + known.slice(2)],
    ['39 hex chars', known.slice(0, -1)],
    ['41 hex chars', known + 'a'],
    ['non-hex character', known.slice(0, -1) + 'g'],
  ])('rejects %s', (_label, address) => {
    expectInvalid('evm', address, /0x followed by 40 hex/);
  });
});

describe('tron', () => {
  const usdt = 'TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t';
  const generated = base58CheckEncode(0x41, seededBytes('tron', 20));

  it('accepts known and generated addresses', () => {
    expectValid('tron', usdt);
    expectValid('tron', 'TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7');
    expect(generated).toMatch(/^T.{33}$/);
    expectValid('tron', generated);
  });

  it('rejects a single changed character', () => {
    expectInvalid('tron', mutate(usdt, 10, B58), /checksum does not match/);
    expectInvalid('tron', mutate(generated, 33, B58), /checksum does not match/);
  });

  it('rejects wrong length and prefix', () => {
    expectInvalid('tron', usdt.slice(0, -1), /34 characters/);
    expectInvalid('tron', usdt + '1', /34 characters/);
    // A bitcoin address padded to 34 chars still does not start with T.
    expectInvalid('tron', '1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNaa', /34 characters/);
    expectInvalid('tron', '1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2', /start with 'T'/);
  });

  it('rejects characters outside base58 and a wrong version byte', () => {
    expectInvalid('tron', 'T0' + usdt.slice(2), /base58 alphabet/);
    expectInvalid('tron', 'TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6I', /base58 alphabet/);
    // Version 0x42 also encodes to a 'T...' string, so only the version byte check catches it.
    const wrongVersion = base58CheckEncode(0x42, seededBytes('tron', 20));
    expect(wrongVersion).toMatch(/^T.{33}$/);
    expectInvalid('tron', wrongVersion, /version byte 0x42/);
  });
});

describe('btc', () => {
  const genesis = '1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa';
  const p2sh = '3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy';
  const p2wpkh = 'bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4';
  const taproot = 'bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0';

  it.each([
    genesis,
    p2sh,
    base58CheckEncode(0x00, seededBytes('btc-p2pkh', 20)),
    base58CheckEncode(0x05, seededBytes('btc-p2sh', 20)),
  ])('accepts base58check %s', (address) => {
    expectValid('btc', address);
  });

  it.each([
    p2wpkh,
    'BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4',
    taproot,
    segwitEncode('bc', 0, seededBytes('btc-p2wsh', 32), 'bech32'),
    segwitEncode('bc', 1, seededBytes('btc-tr', 32), 'bech32m'),
    // BIP-350 valid vectors for future witness versions.
    'bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs',
    'BC1SW50QGDZ25J',
  ])('accepts segwit %s', (address) => {
    expectValid('btc', address);
  });

  it('rejects a single changed character', () => {
    expectInvalid('btc', mutate(genesis, 5, B58), /base58check checksum/);
    expectInvalid('btc', mutate(p2sh, 20, B58), /base58check checksum/);
    expectInvalid('btc', mutate(p2wpkh, 10, BECH32_CHARS), /bech32 checksum/);
    expectInvalid('btc', mutate(taproot, 30, BECH32_CHARS), /bech32 checksum/);
  });

  it('rejects other networks and versions', () => {
    // Litecoin and Dogecoin versions are valid base58check but not bitcoin.
    expectInvalid('btc', base58CheckEncode(0x30, seededBytes('x', 20)), /version byte 0x30/);
    expectInvalid('btc', base58CheckEncode(0x1e, seededBytes('x', 20)), /version byte 0x1e/);
    // Testnet P2PKH (version 0x6f, 'm'/'n') and testnet bech32.
    expectInvalid('btc', base58CheckEncode(0x6f, seededBytes('x', 20)), /version byte 0x6f/);
    // BIP-173 testnet vector: not routed to bech32 (no 'bc1' prefix), so base58 rejects it.
    expectInvalid('btc', 'tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx', /base58 alphabet/);
    expectInvalid('btc', segwitEncode('ltc', 0, seededBytes('x', 20), 'bech32'), /base58 alphabet/);
  });

  it('rejects mixed-case bech32', () => {
    expectInvalid('btc', 'bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kV8f3t4', /mixes upper and lower case/);
    expectInvalid('btc', 'BC1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4', /mixes upper and lower case/);
  });

  it('rejects the wrong checksum variant for the witness version (BIP-350)', () => {
    // BIP-350 invalid vector: witness v1 with a bech32 (not bech32m) checksum.
    expectInvalid('btc', 'bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd', /must use bech32m/);
    expectInvalid('btc', segwitEncode('bc', 0, seededBytes('v0m', 20), 'bech32m'), /must use bech32, not bech32m/);
  });

  it('enforces witness program lengths', () => {
    expectInvalid('btc', segwitEncode('bc', 0, seededBytes('len', 21), 'bech32'), /v0 program of 21 bytes/);
    expectInvalid('btc', segwitEncode('bc', 1, seededBytes('len', 1), 'bech32m'), /1 bytes, expected 2 to 40/);
    expectInvalid('btc', segwitEncode('bc', 1, seededBytes('len', 41), 'bech32m'), /41 bytes, expected 2 to 40/);
    expectValid('btc', segwitEncode('bc', 2, seededBytes('len', 40), 'bech32m'));
  });

  it('rejects wrong length and stray characters', () => {
    expectInvalid('btc', genesis.slice(0, -1));
    expectInvalid('btc', genesis + '1');
    expectInvalid('btc', '1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfN0', /base58 alphabet/);
    expectInvalid('btc', p2wpkh.slice(0, -1), /checksum/);
    expectInvalid('btc', 'bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3tb', /invalid bech32 character 'b'/);
  });
});

describe('ltc', () => {
  it.each([
    'LQTpS3VaYTjCr4s9Y1t5zbeY26zevf7Fb3',
    base58CheckEncode(0x30, seededBytes('ltc-p2pkh', 20)),
    base58CheckEncode(0x32, seededBytes('ltc-p2sh', 20)),
    base58CheckEncode(0x05, seededBytes('ltc-p2sh-legacy', 20)),
    segwitEncode('ltc', 0, seededBytes('ltc-p2wpkh', 20), 'bech32'),
    segwitEncode('ltc', 0, seededBytes('ltc-p2wpkh', 20), 'bech32').toUpperCase(),
    segwitEncode('ltc', 1, seededBytes('ltc-tr', 32), 'bech32m'),
  ])('accepts %s', (address) => {
    expectValid('ltc', address);
  });

  it('prefixes come out as documented', () => {
    expect(base58CheckEncode(0x30, seededBytes('ltc-p2pkh', 20))).toMatch(/^L/);
    expect(base58CheckEncode(0x32, seededBytes('ltc-p2sh', 20))).toMatch(/^M/);
  });

  it('rejects a single changed character', () => {
    expectInvalid('ltc', mutate('LQTpS3VaYTjCr4s9Y1t5zbeY26zevf7Fb3', 12, B58), /checksum/);
    const bech = segwitEncode('ltc', 0, seededBytes('ltc-p2wpkh', 20), 'bech32');
    expectInvalid('ltc', mutate(bech, 8, BECH32_CHARS), /checksum/);
  });

  it('rejects bitcoin-only forms and mixed case', () => {
    expectInvalid('ltc', '1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa', /version byte 0x00/);
    expectInvalid('ltc', 'bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4', /base58 alphabet/);
    const bech = segwitEncode('ltc', 0, seededBytes('ltc-p2wpkh', 20), 'bech32');
    expectInvalid('ltc', bech.slice(0, 10) + bech.slice(10).toUpperCase(), /mixes upper and lower case/);
    expectInvalid('ltc', 'LQTpS3VaYTjCr4s9Y1t5zbeY26zevf7Fb', /bytes, expected 25/);
  });
});

describe('doge', () => {
  it.each([
    'DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L',
    base58CheckEncode(0x1e, seededBytes('doge-p2pkh', 20)),
    base58CheckEncode(0x16, seededBytes('doge-p2sh', 20)),
  ])('accepts %s', (address) => {
    expectValid('doge', address);
  });

  it('rejects a single changed character', () => {
    expectInvalid('doge', mutate('DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L', 7, B58), /checksum/);
  });

  it('rejects other versions, bad length and whitespace', () => {
    expectInvalid('doge', '1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa', /version byte 0x00/);
    expectInvalid('doge', base58CheckEncode(0x71, seededBytes('doge-testnet', 20)), /version byte 0x71/);
    expectInvalid('doge', 'DH5yaieqoZN36fDVciNyRueRGvGLR3mr7LL', /bytes, expected 25/);
    expectInvalid('doge', 'DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L ', /whitespace/);
  });
});

describe('sol', () => {
  it.each([
    'So11111111111111111111111111111111111111112',
    'TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA',
    base58Encode(seededBytes('sol', 32)),
    // Leading zero bytes shorten the encoding; they must still count toward 32.
    base58Encode(Buffer.concat([Buffer.alloc(2), seededBytes('sol-zeros', 30)])),
  ])('accepts %s', (address) => {
    expectValid('sol', address);
  });

  it('rejects wrong decoded length', () => {
    expectInvalid('sol', base58Encode(seededBytes('sol-31', 31)), /decodes to 31 bytes/);
    expectInvalid('sol', base58Encode(seededBytes('sol-33', 33)), /decodes to 33 bytes|32 to 44/);
    // 44 chars but decodes to more than 32 bytes.
    expectInvalid('sol', 'z'.repeat(44), /decodes to 33 bytes/);
    expectInvalid('sol', 'So1111111111111111111111111111', /32 to 44/);
  });

  it('rejects non-base58 characters and whitespace', () => {
    expectInvalid('sol', 'So11111111111111111111111111111111111111110', /base58 alphabet/);
    expectInvalid('sol', 'TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5Dl', /base58 alphabet/);
    expectInvalid('sol', ' So11111111111111111111111111111111111111112', /whitespace/);
  });
});

describe('ton', () => {
  const foundationBounceable = 'EQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqB2N';
  const foundationNonBounceable = 'UQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqEBI';
  const hash = seededBytes('ton', 32);

  it.each([
    foundationBounceable,
    foundationNonBounceable,
    tonFriendly(0x11, 0, hash, 'base64url'),
    tonFriendly(0x51, 0, hash, 'base64'),
    tonFriendly(0x91, -1, hash, 'base64url'),
    tonFriendly(0xd1, 0, hash, 'base64'),
    '0:' + hash.toString('hex'),
    '-1:' + hash.toString('hex').toUpperCase(),
  ])('accepts %s', (address) => {
    expectValid('ton', address);
  });

  it('generated vectors cover both base64 alphabets', () => {
    const both = [0x11, 0x51, 0x91, 0xd1].flatMap((flag) =>
      Array.from({ length: 8 }, (_, i) => tonFriendly(flag, 0, seededBytes(`ton-${i}`, 32), 'base64')),
    );
    expect(both.some((a) => /[+/]/.test(a))).toBe(true);
    for (const address of both) {
      expectValid('ton', address);
      expectValid('ton', address.replace(/\+/g, '-').replace(/\//g, '_'));
    }
  });

  it('rejects a single changed character', () => {
    expectInvalid('ton', mutate(foundationBounceable, 20, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'), /CRC16/);
    expectInvalid('ton', mutate(foundationNonBounceable, 47, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'), /CRC16/);
  });

  it('rejects unknown flag bytes even with a correct CRC', () => {
    expectInvalid('ton', tonFriendly(0x12, 0, hash, 'base64url'), /flag byte 0x12/);
    expectInvalid('ton', tonFriendly(0x00, 0, hash, 'base64url'), /flag byte 0x00/);
  });

  it('rejects wrong lengths, alphabets and raw shapes', () => {
    expectInvalid('ton', foundationBounceable.slice(0, -1), /48 characters/);
    expectInvalid('ton', foundationBounceable + 'A', /48 characters/);
    expectInvalid('ton', foundationBounceable.slice(0, -1) + '=', /base64/);
    expectInvalid('ton', '+' + foundationBounceable.slice(1, -1) + '_', /base64/);
    expectInvalid('ton', '1:' + hash.toString('hex'), /raw form/);
    expectInvalid('ton', '0:' + hash.toString('hex').slice(2), /raw form/);
    expectInvalid('ton', '0:' + hash.toString('hex').slice(1) + 'g', /raw form/);
  });
});

describe('xmr', () => {
  const generalFund = '44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A';
  const body = (seed: string, length: number): string =>
    [...seededBytes(seed, length)].map((b) => B58[b % 58]).join('');

  it.each([generalFund, '8' + body('xmr-sub', 94), '4' + body('xmr-std', 94), '4' + body('xmr-int', 105)])(
    'accepts %s',
    (address) => {
      expectValid('xmr', address);
    },
  );

  it('rejects wrong prefixes', () => {
    expectInvalid('xmr', '5' + generalFund.slice(1), /start with '4' or '8'/);
    expectInvalid('xmr', '8' + body('xmr-int', 105), /integrated address to start with '4'/);
  });

  it('rejects wrong lengths and characters', () => {
    expectInvalid('xmr', generalFund.slice(0, -1), /95 or 106/);
    expectInvalid('xmr', generalFund + 'A', /95 or 106/);
    expectInvalid('xmr', generalFund.slice(0, -1) + '0', /base58 alphabet/);
    expectInvalid('xmr', generalFund.slice(0, -1) + 'l', /base58 alphabet/);
    expectInvalid('xmr', `${generalFund}\n`, /whitespace/);
  });
});
