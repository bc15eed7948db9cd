import { describe, expect, it } from 'vitest';
import { loadConfig, secretValues } from '../../src/config.ts';
import { addressMatcher } from '../../src/http/net.ts';
import { createScrubber } from '../../src/log.ts';
import { configProblems as problems, productionEnv } from '../support/config.ts';

// Credentials in the URLs too, for the scrubber to find and hide.
const production = {
  ...productionEnv,
  DATABASE_URL: 'postgres://payrail:db-password-0123456789@db.internal:5432/payrail',
  ETH_RPC_URL: 'https://mainnet.infura.io/v3/0123456789abcdef0123456789abcdef',
};

describe('webhook hardening settings', () => {
  it('defaults: 600 IPNs a minute per source, no allowlist, no trusted proxy', () => {
    const config = loadConfig(production);
    expect(config.WEBHOOK_RATE_LIMIT).toBe(600);
    expect(config.NOWPAYMENTS_ALLOWED_IPS).toEqual([]);
    expect(config.TRUSTED_PROXY).toEqual([]);
  });

  it('WEBHOOK_RATE_LIMIT takes 0 (no limit) and whole numbers, nothing else', () => {
    expect(loadConfig({ ...production, WEBHOOK_RATE_LIMIT: '0' }).WEBHOOK_RATE_LIMIT).toBe(0);
    expect(loadConfig({ ...production, WEBHOOK_RATE_LIMIT: ' 120\n' }).WEBHOOK_RATE_LIMIT).toBe(120);
    for (const bad of ['-1', '1.5', 'lots', '1000001']) {
      expect(problems({ ...production, WEBHOOK_RATE_LIMIT: bad }), bad).toEqual([
        expect.stringMatching(/^WEBHOOK_RATE_LIMIT: /),
      ]);
    }
  });

  it('reads the allowlist and the trusted proxy as address lists', () => {
    const config = loadConfig({
      ...production,
      NOWPAYMENTS_ALLOWED_IPS: ' 203.0.113.7, 198.51.100.0/24 ,2001:db8::/32',
      TRUSTED_PROXY: '10.0.0.5',
    });
    const allowed = addressMatcher(config.NOWPAYMENTS_ALLOWED_IPS);
    expect(['203.0.113.7', '198.51.100.42', '2001:db8::9'].map(allowed)).toEqual([true, true, true]);
    expect(['203.0.113.8', '10.0.0.5'].map(allowed)).toEqual([false, false]);
    expect(addressMatcher(config.TRUSTED_PROXY)('10.0.0.5')).toBe(true);
  });

  it('a bad entry stops the start, naming the variable and the entry', () => {
    expect(problems({ ...production, NOWPAYMENTS_ALLOWED_IPS: '203.0.113.7,203.0.113.300' })).toEqual([
      'NOWPAYMENTS_ALLOWED_IPS: "203.0.113.300" is not an IPv4 or IPv6 address or CIDR range',
    ]);
    expect(problems({ ...production, TRUSTED_PROXY: '10.0.0.0/40,' })).toEqual([
      'TRUSTED_PROXY: "10.0.0.0/40": the prefix length must be 0 to 32',
      'TRUSTED_PROXY: entry 2 is empty',
    ]);
    expect(problems({ ...production, TRUSTED_PROXY: '0.0.0.0/0' })).toEqual([
      expect.stringMatching(/^TRUSTED_PROXY: .*would match every address/),
    ]);
  });

  it('a misspelt TRUSTED_ or WEBHOOK_ variable is refused, not ignored', () => {
    expect(problems({ ...production, TRUSTED_PROXIES: '10.0.0.5' })).toEqual([
      expect.stringMatching(/^TRUSTED_PROXIES: unknown variable \(known: TRUSTED_PROXY\)/),
    ]);
    expect(problems({ ...production, WEBHOOK_RATE_LIMITS: '10' })).toEqual([
      expect.stringMatching(/^WEBHOOK_RATE_LIMITS: unknown variable/),
    ]);
    expect(problems({ ...production, NOWPAYMENTS_ALLOWED_IP: '10.0.0.5' })).toEqual([
      expect.stringMatching(/^NOWPAYMENTS_ALLOWED_IP: unknown variable/),
    ]);
  });
});

describe('secret values', () => {
  it('include every secret, the named tokens, the bare wallet key and the credentials in the URLs', () => {
    const config = loadConfig({
      ...production,
      ADMIN_TOKENS: 'alice:alice-token-0123456789,bob:bob-token-0123456789ab',
    });
    const values = secretValues(config);
    for (const expected of [
      production.ADMIN_TOKEN,
      production.NOWPAYMENTS_IPN_SECRET,
      production.CHANGENOW_API_KEY,
      production.HOST_WALLET_PRIVATE_KEY,
      'ab'.repeat(32),
      'alice-token-0123456789',
      'bob-token-0123456789ab',
      'db-password-0123456789',
      '0123456789abcdef0123456789abcdef',
    ]) {
      expect(values).toContain(expected);
    }
    // Short path segments are not secrets: "v3" must not be scrubbed from every log line.
    expect(values).not.toContain('v3');
    expect(values).not.toContain('payrail');
  });

  it("finds keys in an RPC URL's query and user part, and a percent-encoded database password", () => {
    const config = loadConfig({
      ...production,
      DATABASE_URL: 'postgres://payrail:p%40ss-word-0123456@db/payrail',
      ETH_RPC_URL:
        'https://project-id-0123456789:project-secret-0123456789@rpc.example/?apikey=query-key-0123456789abc',
    });
    const values = secretValues(config);
    expect(values).toEqual(
      expect.arrayContaining([
        'p@ss-word-0123456',
        'p%40ss-word-0123456',
        'project-secret-0123456789',
        'project-id-0123456789',
        'query-key-0123456789abc',
      ]),
    );
  });

  it('finds credentials and query keys in the NOWPayments and ChangeNow API URLs (a proxy in front of them)', () => {
    const config = loadConfig({
      ...production,
      NOWPAYMENTS_API_URL: 'https://np-proxy-user-0123456:np-pass-0123456789@proxy.example/np',
      CHANGENOW_API_URL: 'https://proxy.example/cn?token=cn-proxy-token-0123456789',
    });
    const values = secretValues(config);
    expect(values).toEqual(
      expect.arrayContaining(['np-proxy-user-0123456', 'np-pass-0123456789', 'cn-proxy-token-0123456789']),
    );
    expect(values).not.toContain('np');
  });

  it('a malformed DATABASE_URL or ETH_RPC_URL is never repeated in the error (it may carry a password or a key)', () => {
    const message = (() => {
      try {
        loadConfig({
          ...production,
          DATABASE_URL: 'postgres//payrail:hunter2-secret-pw@db/payrail',
          ETH_RPC_URL: 'mainnet.infura.io/v3/rpc-key-secret-0123456789',
        });
      } catch (error) {
        return (error as Error).message;
      }
      return '';
    })();
    expect(message).toMatch(/DATABASE_URL/);
    expect(message).toMatch(/ETH_RPC_URL/);
    expect(message).not.toContain('hunter2');
    expect(message).not.toContain('rpc-key-secret');
  });
});

describe('the scrubber', () => {
  it('replaces secrets as written, JSON-escaped and in either case, longest first', () => {
    const scrub = createScrubber(['tok"en\\0123456789', '0xABCDEF0123456789', 'ABCDEF0123456789', 'short']);
    expect(scrub('a tok"en\\0123456789 b')).toBe('a [redacted] b');
    expect(scrub(JSON.stringify({ msg: 'tok"en\\0123456789' }))).toBe('{"msg":"[redacted]"}');
    expect(scrub('key 0xabcdef0123456789 and abcdef0123456789')).toBe('key [redacted] and [redacted]');
    // Too short to scrub without mangling lines.
    expect(scrub('short')).toBe('short');
    expect(createScrubber([])('unchanged')).toBe('unchanged');
  });
});
