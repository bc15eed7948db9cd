/**
 * The channel registry API (PUT/GET /api/channels/:id, GET /api/supported-pairs): bearer auth, complete validation
 * before anything is written, EVM addresses stored checksummed, one audit row per save, balances from the ledger.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { usdtThresholdChannel, WALLET } from '../support/api-seed.ts';
import { createTestDatabase, rowCounts, type RowCounts, type TestDatabase } from '../support/db.ts';
import { CHANNEL_ID, ipnBody, signed } from '../support/ipn.ts';
import { ADMIN_TOKEN, IPN_SECRET, startTestPayrail, type TestPayrail } from '../support/payrail.ts';

/** WALLET with the case of one letter flipped ("b" → "B" at index 3): well-formed hex, wrong EIP-55 checksum. */
const WALLET_BAD_CHECKSUM = '0x8Ba1f109551bD432803012645Ac136ddd64DBA72';
const TRON_WALLET = 'TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t';

/** Channels other than CHANNEL_ID, each used by one test. */
const LOWERCASE_CHANNEL = '-1001000000001';
const TRON_CHANNEL = '-1001000000002';
const REFUSED_CHANNEL = '-1001000000099';
const UNKNOWN_CHANNEL = '-1009999999999';

const thresholdInput = usdtThresholdChannel('100.00');

interface AuditRow {
  actor: string;
  action: string;
  subject: string;
  details: { before: Record<string, unknown> | null; after: Record<string, unknown> };
}

/** CHANNEL_ID as the API shows it while nothing has been paid to it: the threshold channel of thresholdInput. */
function unpaidChannel(thresholdUsd: string, createdAt: unknown) {
  return {
    channelId: CHANNEL_ID,
    payoutStrategy: 'threshold',
    thresholdUsd,
    payoutCurrency: 'usdt',
    payoutNetwork: 'eth',
    walletAddress: WALLET,
    walletChangedAt: null,
    platformFeePercent: null,
    feePercentInForce: '3',
    createdAt,
    updatedAt: expect.any(String),
    balances: [],
    pendingEth: '0',
    availableUsdt: '0',
    openPayouts: [],
  };
}

describe('channel registry API', () => {
  let db: TestDatabase;
  let payrail: TestPayrail;

  /** A PUT of REFUSED_CHANNEL refused with 400 naming `error`: nothing written, no such channel. */
  async function expectRefusedUnsaved(
    response: Awaited<ReturnType<TestPayrail['request']>>,
    error: string,
    before: RowCounts,
  ) {
    expect(response.status).toBe(400);
    expect(response.body).toEqual({ error: expect.any(String) });
    expect(response.body.error).toContain(error);
    expect(await rowCounts(db)).toEqual(before);
    expect((await payrail.request('GET', `/api/channels/${REFUSED_CHANNEL}`)).status).toBe(404);
  }

  beforeAll(async () => {
    db = await createTestDatabase();
    // Web only: no worker takes jobs away between a request and the row counts compared after it.
    payrail = await startTestPayrail(db, { roles: { web: true, worker: false } });
  });

  afterAll(async () => {
    await payrail?.stop();
    await db?.close();
  });

  async function auditRows(channelId: string): Promise<AuditRow[]> {
    const { rows } = await db.pool.query<AuditRow>(
      'select actor, action, subject, details from audit_log where subject = $1 order by id',
      [`channel:${channelId}`],
    );
    return rows;
  }

  describe('authentication', () => {
    interface AuthRow {
      name: string;
      method: 'GET' | 'PUT';
      path: string;
      token: string | null;
      headers: Record<string, string>;
    }
    it.each<AuthRow>([
      { name: 'PUT without a token', method: 'PUT', path: `/api/channels/${CHANNEL_ID}`, token: null, headers: {} },
      {
        name: 'PUT with a wrong token',
        method: 'PUT',
        path: `/api/channels/${CHANNEL_ID}`,
        token: `${ADMIN_TOKEN}x`,
        headers: {},
      },
      {
        name: 'PUT with an empty bearer token',
        method: 'PUT',
        path: `/api/channels/${CHANNEL_ID}`,
        token: '',
        headers: {},
      },
      {
        name: 'PUT with the token in Basic scheme',
        method: 'PUT',
        path: `/api/channels/${CHANNEL_ID}`,
        token: null,
        headers: { authorization: `Basic ${ADMIN_TOKEN}` },
      },
      {
        name: 'GET channel without a token',
        method: 'GET',
        path: `/api/channels/${CHANNEL_ID}`,
        token: null,
        headers: {},
      },
      {
        name: 'GET channel with a wrong token',
        method: 'GET',
        path: `/api/channels/${CHANNEL_ID}`,
        token: 'wrong-token',
        headers: {},
      },
      {
        name: 'GET supported pairs without a token',
        method: 'GET',
        path: '/api/supported-pairs',
        token: null,
        headers: {},
      },
    ])('$name → 401, nothing written', async ({ method, path, token, headers }) => {
      const before = await rowCounts(db);
      const response = await payrail.request(method, path, {
        token,
        headers,
        ...(method === 'PUT' && { body: thresholdInput }),
      });
      expect(response.status).toBe(401);
      expect(response.body).toEqual({ error: 'missing or invalid bearer token' });
      expect(await rowCounts(db)).toEqual(before);
    });
  });

  describe('create, update, read', () => {
    let createdAt: string;

    it('creates a channel: 201 with the channel and no balances, one audit row', async () => {
      const before = await rowCounts(db);
      const response = await payrail.request('PUT', `/api/channels/${CHANNEL_ID}`, { body: thresholdInput });
      expect(response.status).toBe(201);
      expect(response.body).toEqual(unpaidChannel('100.00', expect.any(String)));
      createdAt = response.body.createdAt;
      expect(new Date(createdAt).toISOString()).toBe(createdAt);
      expect(await rowCounts(db)).toEqual({
        ...before,
        channels: before.channels + 1,
        audit_log: before.audit_log + 1,
      });

      const audit = await auditRows(CHANNEL_ID);
      expect(audit).toHaveLength(1);
      expect(audit[0]).toMatchObject({ actor: 'admin', action: 'channel.create', subject: `channel:${CHANNEL_ID}` });
      expect(audit[0]!.details.before).toBeNull();
      expect(audit[0]!.details.after).toMatchObject({
        channelId: CHANNEL_ID,
        thresholdUsd: '100.00',
        walletAddress: WALLET,
      });
    });

    it('updates the channel: 200, createdAt kept, one more audit row with before and after', async () => {
      const before = await rowCounts(db);
      const response = await payrail.request('PUT', `/api/channels/${CHANNEL_ID}`, {
        body: { ...thresholdInput, thresholdUsd: '250.5' },
      });
      expect(response.status).toBe(200);
      expect(response.body).toEqual(unpaidChannel('250.50', createdAt));
      expect(Date.parse(response.body.updatedAt)).toBeGreaterThanOrEqual(Date.parse(createdAt));
      expect(await rowCounts(db)).toEqual({ ...before, audit_log: before.audit_log + 1 });

      const audit = await auditRows(CHANNEL_ID);
      expect(audit.map((a) => [a.actor, a.action])).toEqual([
        ['admin', 'channel.create'],
        ['admin', 'channel.update'],
      ]);
      expect(audit[1]!.details.before).toMatchObject({ thresholdUsd: '100.00' });
      expect(audit[1]!.details.after).toMatchObject({ thresholdUsd: '250.50' });
    });

    it('GET returns the configuration', async () => {
      const response = await payrail.request('GET', `/api/channels/${CHANNEL_ID}`);
      expect(response.status).toBe(200);
      expect(response.body).toEqual(unpaidChannel('250.50', createdAt));
    });

    it('a refused update leaves the channel as it was and writes nothing', async () => {
      const before = await rowCounts(db);
      const stored = await payrail.request('GET', `/api/channels/${CHANNEL_ID}`);
      const response = await payrail.request('PUT', `/api/channels/${CHANNEL_ID}`, {
        body: { ...thresholdInput, walletAddress: WALLET_BAD_CHECKSUM },
      });
      expect(response.status).toBe(400);
      expect(response.body).toEqual({
        error: 'walletAddress is not a valid evm address: EIP-55 checksum does not match',
      });
      expect(await rowCounts(db)).toEqual(before);
      expect(await payrail.request('GET', `/api/channels/${CHANNEL_ID}`)).toEqual(stored);
    });

    it('GET of an unregistered channel → 404', async () => {
      const response = await payrail.request('GET', `/api/channels/${UNKNOWN_CHANNEL}`);
      expect(response.status).toBe(404);
      expect(response.body).toEqual({ error: `channel ${UNKNOWN_CHANNEL} not found` });
    });
  });

  describe('invalid channel id in the path → 400', () => {
    it.each(['abc', '0', '-0123'])('GET /api/channels/%s', async (channelId) => {
      const response = await payrail.request('GET', `/api/channels/${channelId}`);
      expect(response.status).toBe(400);
      expect(response.body).toEqual({ error: 'channelId: must be a Telegram chat id such as -1003296084379' });
    });

    it.each(['abc', '0', '-0123'])('PUT /api/channels/%s writes nothing', async (channelId) => {
      const before = await rowCounts(db);
      const response = await payrail.request('PUT', `/api/channels/${channelId}`, { body: thresholdInput });
      expect(response.status).toBe(400);
      expect(response.body).toEqual({ error: 'channelId: must be a Telegram chat id such as -1003296084379' });
      expect(await rowCounts(db)).toEqual(before);
    });
  });

  describe('refused input → 400, nothing written', () => {
    const { thresholdUsd: _omitThreshold, ...withoutThreshold } = thresholdInput;
    const { walletAddress: _omitWallet, ...withoutWallet } = thresholdInput;

    it.each([
      {
        name: 'threshold strategy without thresholdUsd',
        body: withoutThreshold,
        error: 'thresholdUsd is required for the threshold strategy',
      },
      {
        name: 'threshold strategy with thresholdUsd null',
        body: { ...thresholdInput, thresholdUsd: null },
        error: 'thresholdUsd is required for the threshold strategy',
      },
      {
        name: 'thresholdUsd "0"',
        body: { ...thresholdInput, thresholdUsd: '0' },
        error: 'thresholdUsd must be greater than 0',
      },
      {
        name: 'thresholdUsd "0.00"',
        body: { ...thresholdInput, thresholdUsd: '0.00' },
        error: 'thresholdUsd must be greater than 0',
      },
      {
        name: 'thresholdUsd "-5"',
        body: { ...thresholdInput, thresholdUsd: '-5' },
        error: 'thresholdUsd: amount must not be negative',
      },
      {
        name: 'thresholdUsd "10.001"',
        body: { ...thresholdInput, thresholdUsd: '10.001' },
        error: 'thresholdUsd: amount has more decimals than the asset allows (2)',
      },
      {
        name: 'thresholdUsd "1e3"',
        body: { ...thresholdInput, thresholdUsd: '1e3' },
        error: 'thresholdUsd: amount must be a plain decimal, exponent notation is refused',
      },
      {
        name: 'thresholdUsd ""',
        body: { ...thresholdInput, thresholdUsd: '' },
        error: 'thresholdUsd: amount must be a plain decimal',
      },
      {
        name: 'thresholdUsd implausibly large',
        body: { ...thresholdInput, thresholdUsd: '1000000000000000' },
        error: 'thresholdUsd is implausibly large',
      },
      {
        name: 'thresholdUsd as a number (100)',
        body: { ...thresholdInput, thresholdUsd: 100 },
        error: 'thresholdUsd: Invalid input: expected string, received number',
      },
      {
        name: 'instant strategy with a thresholdUsd',
        body: { ...thresholdInput, payoutStrategy: 'instant' },
        error: 'thresholdUsd applies only to the threshold strategy; omit it or send null for instant',
      },
      {
        name: 'unknown payoutStrategy "weekly"',
        body: { ...thresholdInput, payoutStrategy: 'weekly' },
        error: 'payoutStrategy: Invalid option: expected one of "instant"|"threshold"',
      },
      {
        name: 'unsupported pair: usdt on btc',
        body: { ...thresholdInput, payoutNetwork: 'btc' },
        error: 'payout pair usdt on btc is not supported (GET /api/supported-pairs lists them)',
      },
      {
        name: 'unsupported pair: shib on eth',
        body: { ...thresholdInput, payoutCurrency: 'shib' },
        error: 'payout pair shib on eth is not supported (GET /api/supported-pairs lists them)',
      },
      {
        name: 'EVM address with a broken checksum (one letter case flipped)',
        body: { ...thresholdInput, walletAddress: WALLET_BAD_CHECKSUM },
        error: 'walletAddress is not a valid evm address: EIP-55 checksum does not match',
      },
      {
        name: 'Tron address for usdt on eth',
        body: { ...thresholdInput, walletAddress: TRON_WALLET },
        error: 'walletAddress is not a valid evm address: expected 0x followed by 40 hex characters',
      },
      {
        name: 'EVM address for usdt on trx',
        body: { ...thresholdInput, payoutNetwork: 'trx', walletAddress: WALLET },
        error: 'walletAddress is not a valid tron address: expected 34 characters',
      },
      {
        name: 'EVM zero address',
        body: { ...thresholdInput, walletAddress: '0x0000000000000000000000000000000000000000' },
        error: 'walletAddress is not a valid evm address: zero address would burn the funds',
      },
      {
        name: 'EVM address with trailing whitespace',
        body: { ...thresholdInput, walletAddress: `${WALLET} ` },
        error: 'walletAddress is not a valid evm address: address has leading or trailing whitespace',
      },
      {
        name: 'unknown extra field (strict schema)',
        body: { ...thresholdInput, memo: 'hello' },
        error: 'body: Unrecognized key: "memo"',
      },
      {
        name: 'missing walletAddress',
        body: withoutWallet,
        error: 'walletAddress: Invalid input: expected string, received undefined',
      },
      {
        name: 'empty walletAddress',
        body: { ...thresholdInput, walletAddress: '' },
        error: 'walletAddress: Too small: expected string to have >=1 characters',
      },
      {
        name: 'body is an array',
        body: [thresholdInput],
        error: 'body: Invalid input: expected object, received array',
      },
    ])('$name', async ({ body, error }) => {
      const before = await rowCounts(db);
      const response = await payrail.request('PUT', `/api/channels/${REFUSED_CHANNEL}`, { body });
      await expectRefusedUnsaved(response, error, before);
    });

    it.each([
      {
        name: 'body not JSON',
        raw: '{"payoutStrategy":"threshold",',
        error: "Body is not valid JSON but content-type is set to 'application/json'",
      },
      {
        name: 'body with a __proto__ key',
        raw: JSON.stringify(thresholdInput).replace('{', '{"__proto__":{"admin":true},'),
        error: "Body is not valid JSON but content-type is set to 'application/json'",
      },
    ])('$name', async ({ raw, error }) => {
      const before = await rowCounts(db);
      const response = await payrail.request('PUT', `/api/channels/${REFUSED_CHANNEL}`, {
        raw,
        headers: { 'content-type': 'application/json' },
      });
      await expectRefusedUnsaved(response, error, before);
    });
  });

  describe('accepted addresses', () => {
    it('a lowercase EVM address is accepted and stored checksummed', async () => {
      const response = await payrail.request('PUT', `/api/channels/${LOWERCASE_CHANNEL}`, {
        body: { ...thresholdInput, walletAddress: WALLET.toLowerCase() },
      });
      expect(response.status).toBe(201);
      expect(response.body.walletAddress).toBe(WALLET);
      const stored = await db.pool.query<{ wallet_address: string }>(
        'select wallet_address from channels where channel_id = $1',
        [LOWERCASE_CHANNEL],
      );
      expect(stored.rows).toEqual([{ wallet_address: WALLET }]);
      expect((await payrail.request('GET', `/api/channels/${LOWERCASE_CHANNEL}`)).body.walletAddress).toBe(WALLET);
      const audit = await auditRows(LOWERCASE_CHANNEL);
      expect(audit.map((a) => [a.actor, a.action])).toEqual([['admin', 'channel.create']]);
    });

    it('a Tron address is accepted for usdt on trx (instant, thresholdUsd null)', async () => {
      const response = await payrail.request('PUT', `/api/channels/${TRON_CHANNEL}`, {
        body: {
          payoutStrategy: 'instant',
          thresholdUsd: null,
          payoutCurrency: 'USDT',
          payoutNetwork: 'TRX',
          walletAddress: TRON_WALLET,
        },
      });
      expect(response.status).toBe(201);
      expect(response.body).toMatchObject({
        channelId: TRON_CHANNEL,
        payoutStrategy: 'instant',
        thresholdUsd: null,
        payoutCurrency: 'usdt',
        payoutNetwork: 'trx',
        walletAddress: TRON_WALLET,
        balances: [],
      });
      const audit = await auditRows(TRON_CHANNEL);
      expect(audit.map((a) => [a.actor, a.action])).toEqual([['admin', 'channel.create']]);
    });
  });

  it('GET /api/supported-pairs lists at least 20 pairs, including eth/eth and usdt/trx', async () => {
    const response = await payrail.request('GET', '/api/supported-pairs');
    expect(response.status).toBe(200);
    const pairs = response.body.pairs as Array<{ currency: string; network: string }>;
    expect(pairs.length).toBeGreaterThanOrEqual(20);
    expect(pairs).toContainEqual({ currency: 'eth', network: 'eth' });
    expect(pairs).toContainEqual({ currency: 'usdt', network: 'trx' });
    expect(pairs).toContainEqual({ currency: 'usdt', network: 'eth' });
    expect(pairs).not.toContainEqual({ currency: 'usdt', network: 'btc' });
  });

  it('after a finished IPN, GET shows the net ETH balance (0.00487 minus 3% = 0.0047239)', async () => {
    const ipn = signed(ipnBody({ payment_id: 7_200_000_001, order_id: `PGP-6271402111|${CHANNEL_ID}` }), IPN_SECRET);
    const accepted = await payrail.request('POST', '/webhooks/nowpayments', {
      raw: ipn.raw,
      headers: ipn.headers,
      token: null,
    });
    expect(accepted.status).toBe(200);
    expect(accepted.body).toEqual({ paymentId: '7200000001', status: 'finished', outcome: 'recorded' });

    const response = await payrail.request('GET', `/api/channels/${CHANNEL_ID}`);
    expect(response.status).toBe(200);
    expect(response.body.balances).toEqual([
      { account: 'available', asset: 'eth', amount: '0.0047239', units: '4723900000000000' },
    ]);
    expect(response.body).toMatchObject({ pendingEth: '0.0047239', availableUsdt: '0', openPayouts: [] });
    // Other channels are untouched.
    expect((await payrail.request('GET', `/api/channels/${LOWERCASE_CHANNEL}`)).body.balances).toEqual([]);
  });
});
