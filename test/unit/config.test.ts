import { describe, expect, it } from 'vitest';
import { transferPolicy } from '../../src/app.ts';
import { ConfigError, loadConfig, secretValues } from '../../src/config.ts';
import { configProblems as problems, productionEnv as production } from '../support/config.ts';

describe('configuration', () => {
  it('applies documented defaults', () => {
    const config = loadConfig(production);
    expect(config.PORT).toBe(3000);
    expect(config.PLATFORM_FEE_PERCENT).toMatchObject({ numerator: 3n, denominator: 1n });
    expect(config.embedded).toBe(false);
  });

  it('trims values: a trailing newline in a secret is not part of the secret', () => {
    const config = loadConfig({
      ...production,
      NOWPAYMENTS_IPN_SECRET: `${'b'.repeat(32)}\n`,
      PORT: ' 8080 ',
      PLATFORM_FEE_PERCENT: '2.5\n',
    });
    expect(config.NOWPAYMENTS_IPN_SECRET).toBe('b'.repeat(32));
    expect(config.PORT).toBe(8080);
    expect(config.PLATFORM_FEE_PERCENT.text).toBe('2.5');
  });

  it('takes CHANGENOW_REFUND_TOLERANCE up to 10 percent and refuses more, naming it', () => {
    expect(loadConfig({ ...production, CHANGENOW_REFUND_TOLERANCE: '10' }).CHANGENOW_REFUND_TOLERANCE).toMatchObject({
      numerator: 10n,
      denominator: 1n,
    });
    expect(problems({ ...production, CHANGENOW_REFUND_TOLERANCE: '10.5' })).toEqual([
      expect.stringMatching(/^CHANGENOW_REFUND_TOLERANCE: must be at most 10/),
    ]);
  });

  it('takes CHANGENOW_MAX_SLIPPAGE as a percent, 3 by default, at most 10, and refuses anything else naming it', () => {
    expect(loadConfig(production).CHANGENOW_MAX_SLIPPAGE).toMatchObject({ numerator: 3n, denominator: 1n });
    expect(loadConfig({ ...production, CHANGENOW_MAX_SLIPPAGE: '0.75' }).CHANGENOW_MAX_SLIPPAGE).toMatchObject({
      numerator: 75n,
      denominator: 100n,
    });
    expect(loadConfig({ ...production, CHANGENOW_MAX_SLIPPAGE: '0' }).CHANGENOW_MAX_SLIPPAGE).toMatchObject({
      numerator: 0n,
    });
    expect(problems({ ...production, CHANGENOW_MAX_SLIPPAGE: '30' })).toEqual([
      expect.stringMatching(/^CHANGENOW_MAX_SLIPPAGE: must be at most 10/),
    ]);
    expect(problems({ ...production, CHANGENOW_MAX_SLIPPAGE: '3%' })).toEqual([
      expect.stringMatching(/^CHANGENOW_MAX_SLIPPAGE: percent must be a decimal/),
    ]);
    expect(problems({ ...production, CHANGENOW_MAX_SLIPAGE: '3' })).toEqual([
      expect.stringMatching(/^CHANGENOW_MAX_SLIPAGE: unknown variable/),
    ]);
  });

  it('names every bad variable in one message', () => {
    const found = problems({
      DATABASE_URL: 'mysql://x',
      PORT: 'eighty',
      PLATFORM_FEE_PERCENT: '150',
      LOG_LEVEL: 'loud',
    });
    const names = found.map((p) => p.split(':')[0]);
    expect(names).toEqual(expect.arrayContaining(['DATABASE_URL', 'PORT', 'PLATFORM_FEE_PERCENT', 'LOG_LEVEL']));
  });

  it('requires the secrets when DATABASE_URL is set, and never generates them there', () => {
    const found = problems({ DATABASE_URL: production.DATABASE_URL });
    expect(found.map((p) => p.split(':')[0]).sort()).toEqual([
      'ADMIN_TOKEN',
      'CHANGENOW_API_KEY',
      'CHANGENOW_API_URL',
      'ETH_RPC_URL',
      'HOST_WALLET_PRIVATE_KEY',
      'NOWPAYMENTS_IPN_SECRET',
    ]);
    expect(() =>
      loadConfig(
        { DATABASE_URL: production.DATABASE_URL },
        { devSecrets: () => ({ ADMIN_TOKEN: 'x'.repeat(20), NOWPAYMENTS_IPN_SECRET: 'y'.repeat(20) }) },
      ),
    ).toThrow(ConfigError);
  });

  it('treats an empty or blank value as missing, not as an empty secret', () => {
    expect(problems({ ...production, ADMIN_TOKEN: '   ' })).toEqual([expect.stringMatching(/^ADMIN_TOKEN: required/)]);
  });

  it('asks for generated secrets only on a local (embedded) run', () => {
    const config = loadConfig(
      {},
      { devSecrets: (missing) => Object.fromEntries(missing.map((m) => [m, `generated-${m}-0123456789`])) },
    );
    expect(config.embedded).toBe(true);
    expect(config.ADMIN_TOKEN).toBe('generated-ADMIN_TOKEN-0123456789');
  });

  it('refuses unknown variables that look like ours (a misspelt name must not fall back silently)', () => {
    expect(problems({ ...production, NOWPAYMENT_IPN_SECRET: 'x', PLATFORM_FEE_PERCENTAGE: '5' })).toEqual([
      expect.stringMatching(/^PLATFORM_FEE_PERCENTAGE: unknown variable/),
    ]);
    expect(problems({ ...production, NOWPAYMENTS_SECRET: 'x' })).toEqual([
      expect.stringMatching(/^NOWPAYMENTS_SECRET: unknown variable/),
    ]);
  });

  it('takes NOWPAYMENTS_API_KEY as a secret: too short stops the start naming it, set it is redacted, unset on a local run it is generated', () => {
    expect(problems({ ...production, NOWPAYMENTS_API_KEY: 'short' })).toEqual([
      expect.stringMatching(/^NOWPAYMENTS_API_KEY: must be at least 16 characters$/),
    ]);
    expect(problems({ ...production, NOWPAYMENTS_CONFIRM_DEADLINE: '48h' })).toEqual([
      expect.stringMatching(/^NOWPAYMENTS_CONFIRM_DEADLINE: must be at most 24h/),
    ]);
    const key = 'nowpayments-api-key-0123456789';
    expect(secretValues(loadConfig({ ...production, NOWPAYMENTS_API_KEY: key }))).toContain(key);
    expect(loadConfig(production).NOWPAYMENTS_API_KEY).toBeUndefined();
    const local = loadConfig(
      {},
      { devSecrets: (missing) => Object.fromEntries(missing.map((m) => [m, `generated-${m}-0123456789`])) },
    );
    expect(local.NOWPAYMENTS_API_KEY).toBe('generated-NOWPAYMENTS_API_KEY-0123456789');
  });

  it('refuses a conversion interval the cron cannot express', () => {
    expect(problems({ ...production, CONVERSION_INTERVAL: '90s' })).toEqual([
      expect.stringMatching(/^CONVERSION_INTERVAL: must be whole minutes/),
    ]);
    expect(loadConfig({ ...production, CONVERSION_INTERVAL: '5m' }).CONVERSION_INTERVAL).toBe(300_000);
  });

  it('refuses a staleness limit a live worker could reach between two heartbeats', () => {
    expect(problems({ ...production, HEALTH_WORKER_STALE_SECONDS: '10' })).toEqual([
      expect.stringMatching(/^HEALTH_WORKER_STALE_SECONDS: must be at least three heartbeat intervals/),
    ]);
    expect(
      loadConfig({ ...production, HEALTH_WORKER_STALE_SECONDS: '2', WORKER_HEARTBEAT_INTERVAL: '500ms' })
        .HEALTH_WORKER_STALE_SECONDS,
    ).toBe(2);
  });

  it('an empty DATABASE_URL is an error, not a local run', () => {
    expect(problems({ ...production, DATABASE_URL: '  ' })).toEqual(
      expect.arrayContaining([expect.stringMatching(/^DATABASE_URL: set but empty/)]),
    );
  });

  it('an empty METRICS_TOKEN is an error, not an open /metrics', () => {
    for (const value of ['', '   ', '\n']) {
      expect(problems({ ...production, METRICS_TOKEN: value })).toEqual([
        expect.stringMatching(/^METRICS_TOKEN: set but empty/),
      ]);
      // A local run too: the variable was set, so someone meant a token.
      expect(problems({ METRICS_TOKEN: value })).toEqual(
        expect.arrayContaining([expect.stringMatching(/^METRICS_TOKEN: set but empty/)]),
      );
    }
    expect(loadConfig(production).METRICS_TOKEN).toBeUndefined();
    expect(loadConfig({ ...production, METRICS_TOKEN: ` ${'m'.repeat(20)}\n` }).METRICS_TOKEN).toBe('m'.repeat(20));
  });

  it('a chain other than mainnet needs its own USDT contract', () => {
    expect(problems({ ...production, CHAIN_ID: '11155111' })).toEqual([
      expect.stringMatching(/^USDT_CONTRACT: required when CHAIN_ID is not 1/),
    ]);
    expect(
      loadConfig({ ...production, CHAIN_ID: '11155111', USDT_CONTRACT: `0x${'12'.repeat(20)}` }).USDT_CONTRACT,
    ).toBe(`0x${'12'.repeat(20)}`);
  });

  it('refuses short secrets and fee percentages with too many decimals', () => {
    expect(problems({ ...production, ADMIN_TOKEN: 'short' })).toEqual([expect.stringMatching(/^ADMIN_TOKEN: /)]);
    expect(problems({ ...production, PLATFORM_FEE_PERCENT: '3.0000001' })).toEqual([
      expect.stringMatching(/^PLATFORM_FEE_PERCENT: /),
    ]);
  });
  it('reads ADMIN_TOKENS as named tokens, each recorded under its name', () => {
    const alice = 'alice-token-0123456789';
    const bob = 'bob-token-0123456789ab';
    expect(loadConfig(production).ADMIN_TOKENS).toEqual([]);
    expect(loadConfig({ ...production, ADMIN_TOKENS: ` alice:${alice}, bob.ops:${bob}\n` }).ADMIN_TOKENS).toEqual([
      { name: 'alice', token: alice },
      { name: 'bob.ops', token: bob },
    ]);
  });

  it('refuses a malformed ADMIN_TOKENS list without ever showing a token in the message', () => {
    // Lower case, so a swapped pair ("token:name") reads as a well-formed name.
    const token = 'q7zx-secret-token-4410';
    const cases: Array<[string, RegExp]> = [
      [token, /^ADMIN_TOKENS: must be name:token pairs/], // no name
      [`alice:${token},`, /^ADMIN_TOKENS: must be name:token pairs/], // empty entry
      [`Alice:${token}`, /^ADMIN_TOKENS: must be name:token pairs/], // upper-case name
      [`${token}:alice`, /^ADMIN_TOKENS: the token of entry 1 must be at least 16 characters/], // swapped: the name is short
      [`alice ${token}`, /^ADMIN_TOKENS: must be name:token pairs/],
      [`bob:${token},alice:short-token`, /^ADMIN_TOKENS: the token of entry 2 must be at least 16 characters/],
      [`alice:${token},alice:${token}x`, /^ADMIN_TOKENS: entry 2 uses the name of entry 1/],
      [
        `${token}:bob-token-0123456789,${token}:alice-token-0123456789`,
        /^ADMIN_TOKENS: entry 2 uses the name of entry 1/,
      ], // swapped twice
      [`admin:${token}`, /^ADMIN_TOKENS: the name "admin" is ADMIN_TOKEN's/],
    ];
    for (const [value, expected] of cases) {
      const found = problems({ ...production, ADMIN_TOKENS: value });
      expect(found, value).toEqual([expect.stringMatching(expected)]);
      let message = '';
      try {
        loadConfig({ ...production, ADMIN_TOKENS: value });
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message, value).not.toContain('secret-token');
      expect(message, value).not.toContain('short-token');
    }
  });

  it('reads PAYOUT_APPROVAL_ABOVE_USD as a USD amount (unset: no payout waits)', () => {
    expect(loadConfig(production).PAYOUT_APPROVAL_ABOVE_USD).toBeUndefined();
    expect(loadConfig({ ...production, PAYOUT_APPROVAL_ABOVE_USD: '250' }).PAYOUT_APPROVAL_ABOVE_USD).toBe('250');
    expect(loadConfig({ ...production, PAYOUT_APPROVAL_ABOVE_USD: '250.50' }).PAYOUT_APPROVAL_ABOVE_USD).toBe('250.50');
    for (const bad of ['-1', 'abc', '1.234', '1e3']) {
      expect(problems({ ...production, PAYOUT_APPROVAL_ABOVE_USD: bad }), bad).toEqual([
        `PAYOUT_APPROVAL_ABOVE_USD: must be a USD amount such as 50 or 50.00 (got "${bad}")`,
      ]);
    }
  });

  it('PAYRAIL_CRASH_AT takes the conversion and payout crash points, and nothing else', () => {
    // Written out, not read from CRASH_POINTS: the names docs/configuration.md and the crash tests set are pinned here.
    for (const point of [
      'after_exchange_created',
      'after_broadcast',
      'before_settle',
      'payout_after_exchange_created',
      'payout_after_broadcast',
      'payout_before_complete',
    ]) {
      expect(loadConfig({ ...production, PAYRAIL_CRASH_AT: point }).PAYRAIL_CRASH_AT).toBe(point);
    }
    expect(problems({ ...production, PAYRAIL_CRASH_AT: 'payout_somewhere' })).toEqual([
      expect.stringMatching(/^PAYRAIL_CRASH_AT: /),
    ]);
  });
});

describe('WALLET_CHANGE_HOLD', () => {
  it('is off unless set: unset, empty and 0 mean no hold', () => {
    expect(loadConfig(production).WALLET_CHANGE_HOLD).toBe(0);
    expect(loadConfig({ ...production, WALLET_CHANGE_HOLD: '' }).WALLET_CHANGE_HOLD).toBe(0);
    expect(loadConfig({ ...production, WALLET_CHANGE_HOLD: '0' }).WALLET_CHANGE_HOLD).toBe(0);
  });

  it('reads a duration in milliseconds, trimmed', () => {
    expect(loadConfig({ ...production, WALLET_CHANGE_HOLD: '24h' }).WALLET_CHANGE_HOLD).toBe(86_400_000);
    expect(loadConfig({ ...production, WALLET_CHANGE_HOLD: '90m\n' }).WALLET_CHANGE_HOLD).toBe(5_400_000);
    expect(loadConfig({ ...production, WALLET_CHANGE_HOLD: '2s' }).WALLET_CHANGE_HOLD).toBe(2_000);
    expect(loadConfig({ ...production, WALLET_CHANGE_HOLD: '720h' }).WALLET_CHANGE_HOLD).toBe(720 * 3_600_000);
  });

  it('refuses anything else, naming the value, and a hold longer than 720h', () => {
    for (const bad of ['24', '1d', '-1h', '1.5h', '0h', '00', 'off', '24 h', '721h', '43201m']) {
      expect(problems({ ...production, WALLET_CHANGE_HOLD: bad }), bad).toEqual([
        `WALLET_CHANGE_HOLD: must be 0 (no hold) or a duration such as 30m or 24h, at most 720h (got "${bad}")`,
      ]);
    }
  });

  it('a misspelt name stops the start instead of leaving payouts unheld', () => {
    expect(problems({ ...production, WALLET_CHANGE_HOLDS: '24h' })).toEqual([
      expect.stringMatching(/^WALLET_CHANGE_HOLDS: unknown variable \(known: WALLET_CHANGE_HOLD\)/),
    ]);
  });

  it('transfer policy: mainnet and local defaults, exact gwei, and bad values named', () => {
    const mainnet = transferPolicy(loadConfig(production), 1);
    expect(mainnet).toEqual({
      bumpAfterMs: 180_000,
      maxFeePerGasWei: 300_000_000_000n,
      confirmations: 12,
      receiptWaitMs: 15_000,
    });
    expect(transferPolicy(loadConfig(production), 31337)).toMatchObject({ bumpAfterMs: 30_000, confirmations: 1 });
    const set = transferPolicy(
      loadConfig({
        ...production,
        TRANSFER_BUMP_AFTER: '90s',
        TRANSFER_MAX_FEE_GWEI: '2.000000001',
        CHAIN_CONFIRMATIONS: 'safe',
      }),
      1,
    );
    expect(set).toMatchObject({ bumpAfterMs: 90_000, maxFeePerGasWei: 2_000_000_001n, confirmations: 'safe' });
    expect(transferPolicy(loadConfig({ ...production, CHAIN_CONFIRMATIONS: '3' }), 1).confirmations).toBe(3);
    const found = problems({
      ...production,
      TRANSFER_BUMP_AFTER: 'soon',
      TRANSFER_MAX_FEE_GWEI: '0',
      CHAIN_CONFIRMATIONS: 'latest',
    });
    expect(found.map((p) => p.split(':')[0]).sort()).toEqual([
      'CHAIN_CONFIRMATIONS',
      'TRANSFER_BUMP_AFTER',
      'TRANSFER_MAX_FEE_GWEI',
    ]);
    expect(problems({ ...production, TRANSFER_MAX_FEE_GWEI: '1.0000000001' })).toEqual([
      expect.stringMatching(/^TRANSFER_MAX_FEE_GWEI: /),
    ]);
    expect(problems({ ...production, CHAIN_CONFIRMATIONS: '0' })).toEqual([
      expect.stringMatching(/^CHAIN_CONFIRMATIONS: /),
    ]);
  });
});

describe('PARTIAL_PAYMENTS', () => {
  it('is review unless set to credit; anything else, or a misspelt name, stops the start', () => {
    expect(loadConfig(production).PARTIAL_PAYMENTS).toBe('review');
    expect(loadConfig({ ...production, PARTIAL_PAYMENTS: ' credit\n' }).PARTIAL_PAYMENTS).toBe('credit');
    expect(problems({ ...production, PARTIAL_PAYMENTS: 'yes' })).toEqual([
      'PARTIAL_PAYMENTS: must be credit or review (got "yes")',
    ]);
    expect(problems({ ...production, PARTIAL_PAYMENT: 'credit' })).toEqual([
      expect.stringMatching(/^PARTIAL_PAYMENT: unknown variable/),
    ]);
  });
});
