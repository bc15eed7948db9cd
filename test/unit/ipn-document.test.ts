import { describe, expect, it } from 'vitest';
import { IPN_DOCUMENTED_BODY } from '../../src/http/routes/webhooks.ts';
import { IPN_SCHEMA } from '../../src/integrations/nowpayments/index.ts';

/** Each field's name, and whether it may be left out. */
const fields = (shape: Record<string, { isOptional(): boolean }>) =>
  Object.entries(shape)
    .map(([name, schema]) => [name, schema.isOptional()] as const)
    .sort(([a], [b]) => a.localeCompare(b));

describe('the webhook body in the API description', () => {
  it('has the fields readIpn validates, each optional exactly when the reader lets it be left out', () => {
    expect(fields(IPN_DOCUMENTED_BODY.shape)).toEqual(fields(IPN_SCHEMA.shape));
  });
});
