/**
 * NOWPayments forwarding each paid invoice's outcome to the merchant's wallet on the local chain, before its
 * `finished` IPN: one real transaction per payment, from hot wallets of its own funded by the local chain's faucet.
 *
 * Subscribers pay side by side, so forwards overlap. Each hot wallet signs and submits its transactions in turn, with
 * nonces it keeps (never one given twice or skipped, so no transaction waits behind a gap), and only the waits for
 * receipts run alongside each other; a forward goes to the wallet with the fewest waiting. One mined transaction at a
 * time from one wallet would cap a local run at a few payments a second on a busy machine.
 */
import { createPublicClient, http, type Address, type Hex, type PublicClient } from 'viem';
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts';
import { rpc } from '../chain.ts';

const TIMEOUT_MS = 30_000;
/** Enough for any local run's payments and their gas, per wallet. */
const FUNDING_WEI = 10n ** 24n;
/** A plain ETH transfer to a wallet (not a contract): no estimate needed. */
const TRANSFER_GAS = 21_000n;
const DEFAULT_WALLETS = 4;

export interface OutcomeForwarder {
  /** The hot wallets it sends from. */
  readonly addresses: readonly Address[];
  /** Sends `wei` to the merchant's wallet and waits until it is mined; rejects if it is not, or not in time. */
  forward(wei: bigint): Promise<void>;
}

interface HotWallet {
  readonly account: PrivateKeyAccount;
  /** The last submission in its turn (settled either way). */
  submitted: Promise<unknown>;
  /** The next nonce; unset until read from the chain, and again after a failed submission. */
  nonce: number | undefined;
  waiting: number;
}

export async function startOutcomeForwarder(
  rpcUrl: string,
  merchant: Address,
  options: { wallets?: number } = {},
): Promise<OutcomeForwarder> {
  const client: PublicClient = createPublicClient({
    pollingInterval: 50,
    transport: http(rpcUrl, { timeout: TIMEOUT_MS }),
  });
  const chainId = await client.getChainId();
  const wallets: HotWallet[] = [];
  for (let i = 0; i < (options.wallets ?? DEFAULT_WALLETS); i++) {
    const account = privateKeyToAccount(generatePrivateKey());
    await rpc(rpcUrl, 'anvil_setBalance', [account.address, `0x${FUNDING_WEI.toString(16)}`]);
    wallets.push({ account, submitted: Promise.resolve(), nonce: undefined, waiting: 0 });
  }

  const submit = async (
    wallet: HotWallet,
    wei: bigint,
    fees: { maxFeePerGas: bigint; maxPriorityFeePerGas: bigint },
  ) => {
    wallet.nonce ??= await client.getTransactionCount({ address: wallet.account.address, blockTag: 'pending' });
    try {
      const signed = await wallet.account.signTransaction({
        type: 'eip1559',
        chainId,
        to: merchant,
        value: wei,
        nonce: wallet.nonce,
        gas: TRANSFER_GAS,
        ...fees,
      });
      const hash: Hex = await client.sendRawTransaction({ serializedTransaction: signed });
      wallet.nonce += 1;
      return hash;
    } catch (error) {
      // Whether the node took it is unknown: the wallet's next forward reads its nonce again rather than guess.
      wallet.nonce = undefined;
      throw error;
    }
  };

  return {
    addresses: wallets.map((w) => w.account.address),
    async forward(wei) {
      const wallet = wallets.reduce((least, w) => (w.waiting < least.waiting ? w : least));
      wallet.waiting += 1;
      try {
        // Fees are read outside the wallet's turn: only signing and submitting need the nonce order.
        const fees = await client.estimateFeesPerGas();
        const submitting = wallet.submitted.then(() => submit(wallet, wei, fees));
        wallet.submitted = submitting.catch(() => undefined);
        const hash = await submitting;
        const receipt = await client.waitForTransactionReceipt({ hash, timeout: TIMEOUT_MS });
        if (receipt.status !== 'success') throw new Error(`forwarding ${wei} wei to ${merchant} failed (tx ${hash})`);
      } finally {
        wallet.waiting -= 1;
      }
    },
  };
}
