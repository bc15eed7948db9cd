/** A production configuration that loads, for the config tests to change one setting of at a time. */
import { ConfigError, loadConfig } from '../../src/config.ts';

/** Every setting production requires and nothing else: what loads with each default. */
export const productionEnv = {
  DATABASE_URL: 'postgres://u:p@db.internal:5432/payrail',
  ADMIN_TOKEN: 'a'.repeat(24),
  NOWPAYMENTS_IPN_SECRET: 'b'.repeat(32),
  CHANGENOW_API_URL: 'https://api.changenow.io',
  CHANGENOW_API_KEY: 'c'.repeat(32),
  ETH_RPC_URL: 'https://rpc.example',
  HOST_WALLET_PRIVATE_KEY: `0x${'ab'.repeat(32)}`,
};

/** What loadConfig refuses in `env`, one line a setting; none when it loads. Other errors are thrown. */
export function configProblems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}
