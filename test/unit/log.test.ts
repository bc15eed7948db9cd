import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';

function capture(format: 'json' | 'pretty') {
  const stream = new PassThrough();
  const chunks: string[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk.toString('utf8')));
  const logger = createLogger({ level: 'info', secrets: ['s3cret-api-key-value'], destination: stream, format });
  return { logger, text: () => chunks.join('') };
}

describe('log format', () => {
  it('writes one JSON object per line by default', () => {
    const { logger, text } = capture('json');
    logger.info({ event: 'payout_sent', payoutId: 'p-1' }, 'payout sent');
    const line = JSON.parse(text().trim()) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 30, event: 'payout_sent', payoutId: 'p-1', msg: 'payout sent' });
  });

  it('writes one readable line per event for a terminal, with its fields and without pid', () => {
    const { logger, text } = capture('pretty');
    logger.info({ event: 'payout_sent', payoutId: 'p-1' }, 'payout sent');
    const lines = text().trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/INFO.*payout sent.*"event":"payout_sent".*"payoutId":"p-1"/);
    expect(lines[0]).not.toContain('"pid"');
  });

  it('scrubs secrets from pretty lines as from JSON ones', () => {
    for (const format of ['json', 'pretty'] as const) {
      const { logger, text } = capture(format);
      logger.error({ err: new Error('ChangeNow refused key s3cret-api-key-value') }, 'call failed');
      expect(text()).toContain('[redacted]');
      expect(text()).not.toContain('s3cret-api-key-value');
    }
  });
});
