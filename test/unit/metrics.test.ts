/**
 * The pieces of /metrics that need no database: the exact writer for amounts, the IPN outcome labels, the ChangeNow
 * call observer (through the real client, with an injected fetch), and the bound on ChangeNow error codes.
 */
import { register } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { ChangeNowError, createChangeNowClient, type ChangeNowCall } from '../../src/integrations/changenow/index.ts';
import { createMetrics, exactAmount, gaugeFamily, ipnOutcomeLabel } from '../../src/metrics/index.ts';
import { parseExposition } from '../support/prometheus.ts';

describe('exact amount series', () => {
  it('formats smallest units exactly, far beyond what a float holds', () => {
    expect(exactAmount(12_345_678_901n, 6)).toBe('12345.678901');
    expect(exactAmount(0n, 18)).toBe('0');
    expect(exactAmount(1n, 18)).toBe('0.000000000000000001');
    // 2^64 + 1 wei: as a JavaScript number this would print 18.446744073709552.
    expect(exactAmount(18_446_744_073_709_551_617n, 18)).toBe('18.446744073709551617');
  });

  it('writes a family Prometheus parses, with escaped label values, and refuses a value that is not a decimal', () => {
    const text = gaugeFamily('payrail_test_amount', 'An amount\nover two lines.', [
      { labels: { asset: 'usdt' }, value: '12345.678901' },
      { labels: { asset: 'we"ird\\one\n' }, value: '0' },
    ]);
    const parsed = parseExposition(text);
    expect(parsed.value('payrail_test_amount', { asset: 'usdt' })).toBe('12345.678901');
    expect(parsed.value('payrail_test_amount', { asset: 'we"ird\\one\n' })).toBe('0');
    expect(parsed.families.get('payrail_test_amount')).toMatchObject({
      type: 'gauge',
      help: 'An amount\nover two lines.',
    });
    expect(() => gaugeFamily('payrail_x', 'h', [{ labels: {}, value: '1e3' }])).toThrow(/not a plain decimal/);
    expect(() => gaugeFamily('payrail-x', 'h', [])).toThrow(/not a Prometheus name/);
    expect(() => gaugeFamily('payrail_x', 'h', [{ labels: { __name__: 'x' }, value: '1' }])).toThrow(/label name/);
  });
});

describe('IPN outcome labels', () => {
  it('names an accepted IPN by intake outcome and a refusal by its reason', () => {
    expect(ipnOutcomeLabel({ status: 200, outcome: 'recorded' })).toBe('recorded');
    expect(ipnOutcomeLabel({ status: 202, outcome: 'review' })).toBe('review');
    expect(
      [400, 401, 403, 413, 429, 415, 500, 503].map((status) => ipnOutcomeLabel({ status, outcome: null })),
    ).toEqual([
      'invalid',
      'bad_signature',
      'source_refused',
      'too_large',
      'rate_limited',
      'refused_other',
      'error',
      'error',
    ]);
  });
});

function answering(status: number, body: unknown): typeof fetch {
  return async () => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
}

const ESTIMATE = { fromCurrency: 'eth', toCurrency: 'usdt', fromNetwork: 'eth', toNetwork: 'eth', fromAmount: '0.1' };

describe('ChangeNow call observer', () => {
  it('reports every call once with its endpoint and outcome, and never changes the outcome', async () => {
    const calls: ChangeNowCall[] = [];
    const options = {
      baseUrl: 'http://changenow.invalid',
      apiKey: 'cn-test-key-0123456789',
      connectTimeoutMs: 1000,
      responseTimeoutMs: 1000,
      observer: (call: ChangeNowCall) => calls.push(call),
    };
    const ok = createChangeNowClient({ ...options, fetch: answering(200, { fromAmount: 0.1, toAmount: 299.5 }) });
    expect((await ok.estimate(ESTIMATE)).toAmount).toBe('299.5');
    const refused = createChangeNowClient({
      ...options,
      fetch: answering(401, { error: 'unauthorized', message: 'bad key' }),
    });
    await expect(refused.getExchange('abc123')).rejects.toMatchObject({ kind: 'permanent', code: 'unauthorized' });
    await expect(refused.estimate({ ...ESTIMATE, fromAmount: '1e3' })).rejects.toMatchObject({
      code: 'invalid_request',
    });
    const throwing = createChangeNowClient({
      ...options,
      observer: () => {
        throw new Error('a metrics bug');
      },
      fetch: answering(200, { fromAmount: 0.1, toAmount: 299.5 }),
    });
    expect((await throwing.estimate(ESTIMATE)).toAmount).toBe('299.5');

    expect(
      calls.map((c) => [c.endpoint, c.sent, c.error === null ? 'ok' : (c.error as { code: string }).code]),
    ).toEqual([
      ['estimate', true, 'ok'],
      ['by-id', true, 'unauthorized'],
      ['estimate', false, 'invalid_request'],
    ]);
    for (const call of calls) expect(call.seconds).toBeGreaterThanOrEqual(0);
  });

  it('counts errors by endpoint, class and code, with a bounded number of codes', async () => {
    const metrics = createMetrics({ alertIntervalMs: 60_000 });
    metrics.changenowCall({ endpoint: 'estimate', seconds: 0.2, sent: true, error: null });
    metrics.changenowCall({ endpoint: 'create', seconds: 0.1, sent: true, error: new Error('a bug') });
    // Codes a server made up, a new one per call: 'unexpected' took one of the 32 places, 31 more fit, 9 are "other".
    for (let i = 0; i < 40; i++) {
      metrics.changenowCall({
        endpoint: 'by-id',
        seconds: 0.1,
        sent: true,
        error: new ChangeNowError({
          kind: 'permanent',
          code: `made_up_${i}`,
          httpStatus: 400,
          endpoint: 'by-id',
          detail: 'x',
        }),
      });
    }
    const parsed = parseExposition(await metrics.render());
    expect(
      parsed.value('payrail_changenow_errors_total', { endpoint: 'create', class: 'unexpected', code: 'unexpected' }),
    ).toBe('1');
    const byId = parsed.samples('payrail_changenow_errors_total').filter((s) => s.labels.endpoint === 'by-id');
    expect(byId).toHaveLength(32);
    expect(
      parsed.value('payrail_changenow_errors_total', { endpoint: 'by-id', class: 'permanent', code: 'other' }),
    ).toBe('9');
    expect(
      parsed.value('payrail_changenow_request_duration_seconds_count', { endpoint: 'by-id', result: 'error' }),
    ).toBe('40');
    expect(
      parsed.value('payrail_changenow_request_duration_seconds_count', { endpoint: 'estimate', result: 'ok' }),
    ).toBe('1');
  });
});

describe('process figures', () => {
  it("adds Node's own figures under payrail_process_ to every instance, from one registry that is not prom-client's global one", async () => {
    const first = createMetrics({ alertIntervalMs: 60_000 });
    const second = createMetrics({ alertIntervalMs: 60_000 });
    for (const metrics of [first, second]) {
      const parsed = parseExposition(await metrics.render());
      expect(parsed.families.get('payrail_process_nodejs_eventloop_lag_p99_seconds')?.type).toBe('gauge');
      expect(parsed.number('payrail_process_nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
      expect(parsed.families.get('payrail_process_process_cpu_seconds_total')?.type).toBe('counter');
    }
    expect(register.getMetricsAsArray()).toEqual([]);
  });
});
