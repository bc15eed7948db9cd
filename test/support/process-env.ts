/** The environment a payrail process of its own is started with when no test needs the outside world. */
import { ADMIN_TOKEN, IPN_SECRET, UNUSED_WALLET_KEY } from './payrail.ts';

/**
 * Everything the web role and `payrail status` need to start against `databaseUrl`: ChangeNow and the chain point at
 * an address where nothing listens, and the host wallet's key is one no test funds.
 */
export function offlineProcessEnv(databaseUrl: string): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    ADMIN_TOKEN,
    NOWPAYMENTS_IPN_SECRET: IPN_SECRET,
    CHANGENOW_API_URL: 'http://127.0.0.1:9',
    CHANGENOW_API_KEY: 'test-changenow-key-0123456789',
    ETH_RPC_URL: 'http://127.0.0.1:9',
    HOST_WALLET_PRIVATE_KEY: UNUSED_WALLET_KEY,
    LOG_LEVEL: 'warn',
  };
}
