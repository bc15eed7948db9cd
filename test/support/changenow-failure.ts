/** A ChangeNow call the test expects to fail, and what every such failure must keep to itself. */
import { expect } from 'vitest';
import { ChangeNowError } from '../../src/integrations/changenow/index.ts';

/** The ChangeNowError the call failed with; its message never carries the API key. */
export async function changeNowFailure(promise: Promise<unknown>, apiKey: string): Promise<ChangeNowError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ChangeNowError);
    expect((error as ChangeNowError).message).not.toContain(apiKey);
    return error as ChangeNowError;
  }
  throw new Error('expected the call to fail');
}
