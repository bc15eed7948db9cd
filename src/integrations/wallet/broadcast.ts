/** Sending a signed transaction, and reading the node's refusal as a reason the transfer logic can act on. */
import { BaseError, type Hex } from 'viem';
import type { WalletContext } from './context.ts';
import { ChainUnavailableError, type BroadcastResult } from './types.ts';

export async function broadcast(ctx: WalletContext, rawTx: Hex): Promise<BroadcastResult> {
  try {
    await ctx.client.sendRawTransaction({ serializedTransaction: rawTx });
    return { ok: true };
  } catch (error) {
    return refusal(error);
  }
}

function refusal(error: unknown): BroadcastResult {
  const text = `${error instanceof BaseError ? (error.details ?? '') : ''} ${(error as Error).message}`.toLowerCase();
  // The node already has it: a repeat of our own broadcast, which is the point of signing first.
  if (
    text.includes('already known') ||
    text.includes('already imported') ||
    text.includes('transaction already exists')
  )
    return { ok: true };
  if (text.includes('insufficient funds')) return { ok: false, reason: 'insufficient_funds', message: text.trim() };
  if (text.includes('nonce too low')) return { ok: false, reason: 'nonce_too_low', message: text.trim() };
  // A nonce ahead of the ones the node holds, refused rather than queued (Hardhat when automining, geth with a full
  // pool): the transactions before it are on their way, and its confirm step sends it again behind them.
  if (
    text.includes('nonce too high') ||
    text.includes('future transaction tries to replace pending') ||
    text.includes('too far in the future')
  )
    return { ok: false, reason: 'nonce_gap', message: text.trim() };
  // A version at the same nonce with higher fees is already in the node's pool (or this one is not 10 % above it).
  if (text.includes('underpriced') || text.includes('fee too low') || text.includes('less than block base fee'))
    return { ok: false, reason: 'underpriced', message: text.trim() };
  // No answer about the transaction: the node was not reached, or the provider limited the rate (HTTP 429, or
  // JSON-RPC -32005 "limit exceeded") before it looked at it.
  if (
    text.includes('fetch failed') ||
    text.includes('econnrefused') ||
    text.includes('timed out') ||
    text.includes('http request failed') ||
    text.includes('exceeds defined limit') ||
    text.includes('rate limit') ||
    text.includes('too many requests')
  ) {
    throw new ChainUnavailableError(`broadcast: ${text.trim()}`, { cause: error });
  }
  return { ok: false, reason: 'rejected', message: text.trim() };
}
