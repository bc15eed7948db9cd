/**
 * Payout address sanity checks.
 *
 * These run before we hand an address to a payout provider. They are offline and
 * format-level only: a passing address is well-formed and its checksum (where the
 * format has one we verify) matches, which catches typos and wrong-network
 * pastes. It says nothing about whether anyone controls the address.
 */
import { createHash } from 'node:crypto';
import { base58, bech32, bech32m } from '@scure/base';
import { isAddress } from 'viem';

export const ADDRESS_FORMATS = ['evm', 'tron', 'btc', 'ltc', 'doge', 'sol', 'ton', 'xmr'] as const;
export type AddressFormat = (typeof ADDRESS_FORMATS)[number];

/** Longest address we are willing to look at; real ones are far shorter (Monero integrated: 106). */
const MAX_ADDRESS_LENGTH = 128;

/** Each format's own check, run once the generic one passed; a Record, so a format added without one does not compile. */
const FORMAT_CHECKS: Record<AddressFormat, (address: string) => string | null> = {
  evm: checkEvm,
  tron: checkTron,
  btc: checkBtc,
  ltc: checkLtc,
  doge: checkDoge,
  sol: checkSol,
  ton: checkTon,
  xmr: checkXmr,
};

/** Returns null when valid, or a short human reason (e.g. "EIP-55 checksum does not match") when not. */
export function checkAddress(format: AddressFormat, address: string): string | null {
  return checkGeneric(address) ?? FORMAT_CHECKS[format](address);
}

// ---------------------------------------------------------------------------
// Per-format checks
// ---------------------------------------------------------------------------

function checkGeneric(address: string): string | null {
  if (address.length === 0) return 'address is empty';
  if (address.length > MAX_ADDRESS_LENGTH) return `address is longer than ${MAX_ADDRESS_LENGTH} characters`;
  // Copy-paste from chats and spreadsheets often drags whitespace along; we refuse
  // rather than trim so the stored address is exactly what was validated.
  if (address.trim() !== address) return 'address has leading or trailing whitespace';
  // Look-alike Unicode characters (Cyrillic "а", full-width digits) are a known
  // address-spoofing trick; every supported format is plain ASCII.
  // eslint-disable-next-line no-control-regex -- the range is all of ASCII, control characters included, on purpose
  if (/[^\x00-\x7f]/.test(address)) return 'address contains non-ASCII characters';
  return null;
}

const EVM_ZERO_ADDRESS = '0x0000000000000000000000000000000000000000';

function checkEvm(address: string): string | null {
  if (!/^0x[0-9a-fA-F]{40}$/.test(address)) return 'expected 0x followed by 40 hex characters';
  if (address.toLowerCase() === EVM_ZERO_ADDRESS) return 'zero address would burn the funds';
  const body = address.slice(2);
  // Single-case input carries no checksum information (EIP-55 is encoded in the
  // mix of cases), so there is nothing further to verify. viem's strict mode only
  // exempts all-lowercase, hence the explicit uppercase branch.
  if (body === body.toLowerCase() || body === body.toUpperCase()) return null;
  if (!isAddress(address, { strict: true })) return 'EIP-55 checksum does not match';
  return null;
}

function checkTron(address: string): string | null {
  if (address.length !== 34) return 'expected 34 characters';
  if (!address.startsWith('T')) return "expected address to start with 'T'";
  const decoded = decodeBase58Check(address, [0x41]);
  return typeof decoded === 'string' ? decoded : null;
}

function checkBtc(address: string): string | null {
  // Base58 addresses for mainnet start with 1 or 3, so a "bc1" prefix is unambiguous.
  if (address.toLowerCase().startsWith('bc1')) return checkSegwit(address, 'bc');
  const decoded = decodeBase58Check(address, [0x00, 0x05]);
  return typeof decoded === 'string' ? decoded : null;
}

function checkLtc(address: string): string | null {
  if (address.toLowerCase().startsWith('ltc1')) return checkSegwit(address, 'ltc');
  // 0x05 is the legacy P2SH version Litecoin shared with Bitcoin before moving to 0x32 (M...).
  const decoded = decodeBase58Check(address, [0x30, 0x32, 0x05]);
  return typeof decoded === 'string' ? decoded : null;
}

function checkDoge(address: string): string | null {
  const decoded = decodeBase58Check(address, [0x1e, 0x16]);
  return typeof decoded === 'string' ? decoded : null;
}

function checkSol(address: string): string | null {
  // 32 bytes need between 32 and 44 base58 characters; bounding first keeps the
  // decoder's work trivial for junk input.
  if (address.length < 32 || address.length > 44) return 'expected 32 to 44 base58 characters';
  const bytes = decodeBase58(address);
  if (bytes === null) return 'contains characters outside the base58 alphabet';
  if (bytes.length !== 32) return `decodes to ${bytes.length} bytes, expected 32`;
  return null;
}

/** Flag bytes: bounceable (0x11), non-bounceable (0x51), and their testnet-only variants (| 0x80). */
const TON_FLAGS = new Set([0x11, 0x51, 0x91, 0xd1]);

function checkTon(address: string): string | null {
  if (address.includes(':')) {
    // The raw form carries no checksum, so only its shape can be checked.
    if (!/^(0|-1):[0-9a-fA-F]{64}$/.test(address)) return 'expected raw form 0:<64 hex> or -1:<64 hex>';
    return null;
  }
  if (address.length !== 48) return 'expected 48 characters in user-friendly form';
  const standard = /^[A-Za-z0-9+/]{48}$/.test(address);
  const urlSafe = /^[A-Za-z0-9_-]{48}$/.test(address);
  // Mixing both alphabets is not something any wallet produces; it points to corruption.
  if (!standard && !urlSafe) return 'expected base64 or base64url characters';
  const bytes = Buffer.from(address, urlSafe ? 'base64url' : 'base64');
  if (bytes.length !== 36) return `decodes to ${bytes.length} bytes, expected 36`;
  const flag = bytes[0] ?? 0;
  if (!TON_FLAGS.has(flag)) return `unknown flag byte 0x${hexByte(flag)}`;
  const expected = crc16Xmodem(bytes.subarray(0, 34));
  const actual = bytes.readUInt16BE(34);
  if (expected !== actual) return 'CRC16 checksum does not match';
  return null;
}

function checkXmr(address: string): string | null {
  // Format only: Monero appends a keccak-256 checksum and encodes in 8-byte
  // blocks ("block base58"), which we do not decode here, so a typo inside the
  // body is not caught. The network prefix is approximated by the first
  // character (4 = standard/integrated, 8 = subaddress on mainnet).
  if (!/^[1-9A-HJ-NP-Za-km-z]+$/.test(address)) return 'contains characters outside the base58 alphabet';
  if (address.length === 95) {
    if (address[0] !== '4' && address[0] !== '8') return "expected address to start with '4' or '8'";
    return null;
  }
  if (address.length === 106) {
    if (address[0] !== '4') return "expected integrated address to start with '4'";
    return null;
  }
  return 'expected 95 or 106 characters';
}

// ---------------------------------------------------------------------------
// Base58 / Base58Check and Bech32 / Bech32m through @scure/base (audited, and already shipped with viem). What stays
// here is what a wallet user reads: which check failed, in the order a typo is likeliest to explain it.
// ---------------------------------------------------------------------------

/** Decodes bitcoin-alphabet base58; null on any character outside the alphabet. */
function decodeBase58(input: string): Uint8Array | null {
  try {
    return base58.decode(input);
  } catch {
    return null;
  }
}

function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

/**
 * Decodes a 25-byte base58check address (1 version byte, 20-byte hash, 4-byte
 * checksum) and checks the version against the allowed set. Returns the version
 * byte, or a reason string.
 */
function decodeBase58Check(address: string, versions: readonly number[]): number | string {
  const bytes = decodeBase58(address);
  if (bytes === null) return 'contains characters outside the base58 alphabet';
  if (bytes.length !== 25) return `decodes to ${bytes.length} bytes, expected 25`;
  const payload = bytes.subarray(0, 21);
  const checksum = sha256(sha256(payload)).subarray(0, 4);
  // Checksum before version: a typo is the likelier mistake, and reporting
  // "wrong version" for a mistyped address would send the user looking in the
  // wrong place.
  if (!checksum.equals(bytes.subarray(21))) return 'base58check checksum does not match';
  const version = bytes[0] ?? 0;
  if (!versions.includes(version)) return `unexpected version byte 0x${hexByte(version)}`;
  return version;
}

function hexByte(value: number): string {
  return value.toString(16).padStart(2, '0');
}

const BECH32_CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';

type Bech32Decoded = { hrp: string; words: number[]; variant: 'bech32' | 'bech32m' };

/**
 * Splits and checksums a bech32/bech32m string (BIP-173, BIP-350); returns the 5-bit data without the checksum. The
 * shape is checked here first, so a wrong address says what is wrong with it rather than only that it is invalid.
 */
function decodeBech32(input: string): Bech32Decoded | string {
  if (input.length > 90) return 'bech32 address is longer than 90 characters';
  // BIP-173 allows all-upper or all-lower (uppercase suits QR codes) but never a mix.
  if (input !== input.toLowerCase() && input !== input.toUpperCase())
    return 'bech32 address mixes upper and lower case';
  const lower = input.toLowerCase();
  const separator = lower.lastIndexOf('1');
  if (separator < 1 || separator + 7 > lower.length) return 'bech32 separator misplaced or data too short';
  for (const char of lower.slice(separator + 1)) {
    if (!BECH32_CHARSET.includes(char)) return `invalid bech32 character '${char}'`;
  }
  const asBech32 = bech32.decodeUnsafe(lower, 90);
  if (asBech32) return { hrp: asBech32.prefix, words: asBech32.words, variant: 'bech32' };
  const asBech32m = bech32m.decodeUnsafe(lower, 90);
  if (asBech32m) return { hrp: asBech32m.prefix, words: asBech32m.words, variant: 'bech32m' };
  return 'bech32 checksum does not match';
}

function checkSegwit(address: string, expectedHrp: string): string | null {
  const decoded = decodeBech32(address);
  if (typeof decoded === 'string') return decoded;
  if (decoded.hrp !== expectedHrp) return `expected human-readable part '${expectedHrp}'`;
  const [version, ...programWords] = decoded.words;
  if (version === undefined) return 'missing witness version';
  if (version > 16) return `invalid witness version ${version}`;
  // BIP-350: v0 keeps the original bech32 constant, v1+ must use bech32m. Getting
  // this wrong is exactly the bug that made v1 sends to bech32 addresses unsafe.
  if (version === 0 && decoded.variant !== 'bech32') return 'witness v0 must use bech32, not bech32m';
  if (version > 0 && decoded.variant !== 'bech32m') return `witness v${version} must use bech32m, not bech32`;
  // Regrouped into bytes, refusing the non-zero or overlong padding BIP-173 forbids.
  const program = bech32.fromWordsUnsafe(programWords);
  if (program === undefined) return 'invalid witness program padding';
  if (program.length < 2 || program.length > 40) return `witness program of ${program.length} bytes, expected 2 to 40`;
  if (version === 0 && program.length !== 20 && program.length !== 32) {
    return `witness v0 program of ${program.length} bytes, expected 20 or 32`;
  }
  return null;
}

// ---------------------------------------------------------------------------
// CRC16-XMODEM (TON user-friendly addresses)
// ---------------------------------------------------------------------------

function crc16Xmodem(data: Uint8Array): number {
  let crc = 0;
  for (const byte of data) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
  }
  return crc;
}
