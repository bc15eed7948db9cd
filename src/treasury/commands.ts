/**
 * The command-line side of the treasury: `payrail check-ledger --chain`, `payrail deposit <txHash>` and
 * `payrail withdrawal <txHash>`. They only read the chain, so they take the host wallet's address
 * (HOST_WALLET_ADDRESS, or derived from the key when given).
 */
import { privateKeyToAccount } from 'viem/accounts';
import type { Config } from '../config.ts';
import type { Db } from '../db/index.ts';
import { createChainWallet, type ChainWallet } from '../integrations/wallet/index.ts';
import { decimalsOf, formatUnits } from '../money/index.ts';
import type { ChainReport } from './chain-check.ts';
import { recordDeposit, type DepositAsset } from './deposit.ts';
import { TreasuryRefused, type EvidenceChain } from './evidence.ts';
import { recordWithdrawal, type WithdrawalSource } from './withdrawal.ts';

const HASH = /^0x[0-9a-fA-F]{64}$/;

export type Booking =
  | { command: 'deposit'; txHash: string; asset: DepositAsset }
  | { command: 'withdrawal'; txHash: string; from: WithdrawalSource };

/** `deposit <txHash> [--asset eth|usdt]` or `withdrawal <txHash> [--from capital|fees|refunds]`, or what is wrong with them. */
export function bookingOptions(command: Booking['command'], args: readonly string[]): Booking | string {
  const [txHash, ...rest] = args;
  if (txHash === undefined || !HASH.test(txHash))
    return `payrail ${command}: give the transaction's hash (0x + 64 hex digits)`;
  const [flag, value, ...more] = rest;
  if (flag === undefined)
    return command === 'deposit' ? { command, txHash, asset: 'eth' } : { command, txHash, from: 'capital' };
  if (more.length === 0 && command === 'deposit' && flag === '--asset' && (value === 'eth' || value === 'usdt'))
    return { command, txHash, asset: value };
  if (
    more.length === 0 &&
    command === 'withdrawal' &&
    flag === '--from' &&
    (value === 'capital' || value === 'fees' || value === 'refunds')
  )
    return { command, txHash, from: value };
  return `payrail ${command}: unexpected ${rest.join(' ')}`;
}

/** Books the transaction and says what it booked; a refusal (nothing booked) is exit 1 with the reason. */
export async function runBooking(db: Db, chain: EvidenceChain, booking: Booking): Promise<number> {
  try {
    if (booking.command === 'deposit') {
      const r = await recordDeposit(db, chain, { txHash: booking.txHash, asset: booking.asset, actor: 'cli' });
      process.stdout.write(
        `${r.booked ? 'booked' : 'already booked'}: ${r.txHash} brought ${units(r.amount, r.asset)} to the host wallet as platform capital\n`,
      );
    } else {
      const r = await recordWithdrawal(db, chain, { txHash: booking.txHash, from: booking.from, actor: 'cli' });
      const sent = [r.ethOut > 0n ? units(r.ethOut, 'eth') : '', r.usdtOut > 0n ? units(r.usdtOut, 'usdt') : '']
        .filter(Boolean)
        .join(' and ');
      const source =
        booking.from === 'refunds' ? 'the refunds owed (platform:refunds_owed)' : `the platform's ${booking.from}`;
      process.stdout.write(
        `${r.booked ? 'booked' : 'already booked'}: ${r.txHash} from the host wallet: gas ${units(r.gasWei, 'eth')} as a network cost${sent ? `, ${sent} sent away, taken from ${source}` : ''}\n`,
      );
    }
    return 0;
  } catch (error) {
    if (!(error instanceof TreasuryRefused)) throw error;
    process.stderr.write(`${booking.command} refused: ${error.message}\n`);
    return 1;
  }
}

/** The read-only wallet the commands use, or the reason it cannot be made from this configuration. */
export function readOnlyWallet(config: Config): ChainWallet | string {
  if (config.ETH_RPC_URL === undefined) return 'ETH_RPC_URL: required to read the chain';
  const fromKey = config.HOST_WALLET_PRIVATE_KEY
    ? privateKeyToAccount(config.HOST_WALLET_PRIVATE_KEY).address
    : undefined;
  const given = config.HOST_WALLET_ADDRESS;
  if (fromKey && given && fromKey.toLowerCase() !== given.toLowerCase())
    return `HOST_WALLET_ADDRESS: ${given} is not the address of HOST_WALLET_PRIVATE_KEY (${fromKey})`;
  const address = (given ?? fromKey) as `0x${string}` | undefined;
  if (!address) return 'HOST_WALLET_ADDRESS: required (or HOST_WALLET_PRIVATE_KEY) to know which wallet to read';
  return createChainWallet({ rpcUrl: config.ETH_RPC_URL, address, chainId: config.CHAIN_ID, timeoutMs: 15_000 });
}

function units(amount: bigint, asset: 'eth' | 'usdt'): string {
  return `${formatUnits(amount, decimalsOf(asset))} ${asset.toUpperCase()}`;
}

/** Every term, so a difference can be traced to its cause. */
export function formatChainReport(report: ChainReport): string {
  const lines = [`host wallet ${report.hostAddress}`];
  for (const a of report.assets) {
    lines.push(
      `${a.asset.toUpperCase()}:`,
      `  on chain                                 ${units(a.onChain, a.asset)}`,
      `  ledger, held by the platform             ${units(a.ledgerHeld, a.asset)}   (channels, payouts set aside, fees, capital, refunds owed, gas paid)`,
      `  − mined, not booked out yet              ${units(a.leftNotBooked, a.asset)}   (${a.inFlight.length} transfer(s)${
        a.inFlight.length
          ? `: ${a.inFlight
              .slice(0, 5)
              .map((t) => `${t.transferId} ${t.purpose} ${t.ref}`)
              .join(', ')}`
          : ''
      })`,
      ...(a.asset === 'eth' ? [`  − gas of mined versions, not booked yet  ${units(a.gasNotBooked, a.asset)}`] : []),
      `  = expected on chain                      ${units(a.expected, a.asset)}`,
      `  difference (on chain − expected)         ${units(a.difference, a.asset)}${a.difference === 0n ? '' : '   MISMATCH'}`,
    );
  }
  lines.push(
    report.ok
      ? 'ledger = chain'
      : `ledger ≠ chain: ${report.assets
          .filter((a) => a.difference !== 0n)
          .map((a) => a.asset.toUpperCase())
          .join(', ')}`,
  );
  return `${lines.join('\n')}\n`;
}
