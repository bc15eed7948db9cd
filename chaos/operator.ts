/**
 * The run's operator: a person working the review queues through the admin API while payments flow, and again
 * after the settle, deciding from what ChangeNow (the simulator) and the chain show, as a careful operator would:
 *
 * - a payment in review is credited when payrail allows it (money reported received: a partial, a top-up); one
 *   NOWPayments' API did not confirm is asked about once more (recheck); else it is ignored (a foreign outcome, a
 *   restated amount, a forgery: nothing to credit);
 * - a conversion in review is resolved with what became of its ETH: the USDT ChangeNow paid the host wallet
 *   (`received`, the amount read from the chain), the ETH it refunded (`returned`), or nothing anyone can recover
 *   (`lost`: paid elsewhere, failed); retried when its exchange was never funded;
 * - a payout in review is cancelled when its exchange was never funded (created unlike the request), resolved as paid
 *   when ChangeNow paid the owner's wallet (below its estimate); the others stay visible for a person with more to go
 *   on than the run has;
 * - mid-run, one channel is paid now (`POST /api/channels/:id/payout`) and one exchange-paid channel switches
 *   strategy (instant ↔ threshold), so conversions and batches in flight land on a strategy they did not start on.
 *
 * Every answer but a 2xx or a 409 (an action not safe from the state it found, or already taken) is a violation.
 */
import type pg from 'pg';
import { formatUnits, type Hex } from 'viem';
import type { SimExchange } from '../src/simulators/changenow/server.ts';
import { admin, type AdminApi } from './admin.ts';
import type { Rng } from './rng.ts';
import type { ChaosChannel } from './traffic.ts';
import type { World } from './world.ts';

export interface OperatorLog {
  /** Actions taken, by kind and answer ("conversion resolve received: 200"). */
  readonly taken: Map<string, number>;
  /** Answers the API should never give an operator. */
  readonly unexpected: string[];
}

export function newOperatorLog(): OperatorLog {
  return { taken: new Map(), unexpected: [] };
}

interface Listed {
  conversionId?: string;
  payoutId?: string;
  kind?: 'threshold' | 'instant';
  channelId?: string;
  walletAddress?: string;
}

/** The latest exchange ChangeNow holds for a conversion or payout (payrail's id is its userId). */
function exchangeOf(world: World, id: string): SimExchange | undefined {
  let found: SimExchange | undefined;
  for (const ex of world.sim.exchanges.values()) if (ex.userId === id) found = ex;
  return found;
}

export class Operator {
  private readonly rechecked = new Set<string>();

  constructor(
    private readonly api: AdminApi,
    private readonly pool: pg.Pool,
    private readonly world: World,
    readonly log: OperatorLog = newOperatorLog(),
  ) {}

  private async act(
    what: string,
    method: 'POST' | 'PUT',
    path: string,
    body?: unknown,
    allowed: readonly number[] = [200, 201, 202, 409],
  ): Promise<number> {
    const { status, json } = await admin(this.api, method, path, body);
    const key = `${what}: ${status}`;
    this.log.taken.set(key, (this.log.taken.get(key) ?? 0) + 1);
    if (!allowed.includes(status))
      this.log.unexpected.push(`${what} ${path} → ${status} ${JSON.stringify(json).slice(0, 200)}`);
    return status;
  }

  /** One pass over every review queue; the number of actions that moved something (2xx). */
  async reviewPass(): Promise<number> {
    let moved = 0;
    const ok = (status: number) => (status < 300 ? 1 : 0);
    const { rows } = await this.pool.query<{ id: string; reason: string }>(
      'select payment_id::text as id, review_reason as reason from payments where review_reason is not null order by payment_id',
    );
    for (const p of rows) {
      const credited = await this.act('payment credit', 'POST', `/api/payments/${p.id}/credit`);
      moved += ok(credited);
      if (credited !== 409) continue;
      // NOWPayments did not confirm it: asked once more (an outage may have ended), then given up on.
      if (p.reason.startsWith('payment_unconfirmed') && !this.rechecked.has(p.id)) {
        this.rechecked.add(p.id);
        const asked = await this.act('payment recheck', 'POST', `/api/payments/${p.id}/recheck`);
        moved += ok(asked);
        if (asked !== 409) continue;
      }
      moved += ok(
        await this.act('payment ignore', 'POST', `/api/payments/${p.id}/ignore`, {
          note: `chaos operator: ${p.reason}`,
        }),
      );
    }
    for (const c of await this.listed('/api/conversions?status=needs_review&limit=500', 'conversions'))
      moved += ok(await this.conversion(c.conversionId as string));
    for (const p of await this.listed('/api/payouts?status=needs_review&limit=500', 'payouts')) {
      const ex = exchangeOf(this.world, p.payoutId as string);
      // Its funds never left: cancelled back to the channel (a retry would adopt the same exchange, found by payrail's
      // id at ChangeNow, and come back to review).
      if (ex && ex.amountFrom === null) {
        const cancelled = await this.act(
          'payout cancel (exchange never funded)',
          'POST',
          `/api/payouts/${p.payoutId}/cancel`,
        );
        moved += ok(cancelled);
        // A batch's USDT is back on its channel, which nothing batches again until another credit: paid now.
        if (cancelled === 200 && p.kind === 'threshold')
          moved += ok(
            await this.act(
              'channel pay now (after its batch was cancelled)',
              'POST',
              `/api/channels/${p.channelId}/payout`,
              undefined,
              [201, 409],
            ),
          );
      } else if (ex?.status === 'finished' && ex.payoutAddress === p.walletAddress) {
        // Paid to the owner's wallet, for less than estimated: the owner has it.
        moved += ok(
          await this.act('payout resolve paid', 'POST', `/api/payouts/${p.payoutId}/resolve`, {
            outcome: 'paid',
            note: `chaos operator: ChangeNow paid ${ex.amountTo ?? '?'} to the owner's wallet`,
          }),
        );
      }
    }
    return moved;
  }

  private async listed(path: string, key: 'conversions' | 'payouts'): Promise<Listed[]> {
    const { status, json } = await admin(this.api, 'GET', path);
    if (status !== 200) {
      this.log.unexpected.push(`GET ${path} → ${status}`);
      return [];
    }
    return (json as Record<typeof key, Listed[] | undefined>)[key] ?? [];
  }

  private async conversion(id: string): Promise<number> {
    const path = `/api/conversions/${id}`;
    const ex = exchangeOf(this.world, id);
    if (!ex || ex.amountFrom === null)
      return this.act('conversion retry (exchange never funded)', 'POST', `${path}/retry`);
    const host = this.world.hostAddress.toLowerCase();
    if (ex.status === 'finished' && ex.payoutAddress.toLowerCase() === host && ex.payoutHash) {
      const units = await this.world.hostReader.tokenReceived(
        ex.payoutHash as Hex,
        this.world.usdt,
        this.world.hostAddress,
      );
      if (units === null) return 0;
      return this.act('conversion resolve received', 'POST', `${path}/resolve`, {
        outcome: 'received',
        amount: formatUnits(units, 6),
        txHash: ex.payoutHash,
        note: 'chaos operator: ChangeNow paid the host wallet',
      });
    }
    if (ex.status === 'refunded' && ex.refundHash) {
      return this.act('conversion resolve returned', 'POST', `${path}/resolve`, {
        outcome: 'returned',
        txHash: ex.refundHash,
        note: 'chaos operator: ChangeNow refunded',
      });
    }
    if (ex.status === 'finished' || ex.status === 'failed' || ex.status === 'expired') {
      return this.act('conversion resolve lost', 'POST', `${path}/resolve`, {
        outcome: 'lost',
        note: `chaos operator: exchange ${ex.status}${ex.status === 'finished' ? ` paying ${ex.payoutAddress}` : ''}, nothing came back`,
      });
    }
    return 0;
  }

  /**
   * Pays one of the threshold channels now, whatever its threshold: one the dashboard offers it for (USDT available,
   * no batch open) when there is one, else any (then 409: no USDT, or a batch open).
   */
  async payNow(rng: Rng, channels: readonly ChaosChannel[]): Promise<string> {
    const threshold = channels.filter((c) => c.body.payoutStrategy === 'threshold');
    if (threshold.length === 0) return 'pay now: no threshold channel';
    const { status: read, json } = await admin(this.api, 'GET', '/api/overview');
    const offered =
      read === 200
        ? new Set(
            (
              (json as { channels?: { items?: Array<{ channelId: string; canPayNow: boolean }> } }).channels?.items ??
              []
            )
              .filter((c) => c.canPayNow)
              .map((c) => c.channelId),
          )
        : new Set<string>();
    const candidates = threshold.filter((c) => offered.has(c.id));
    const ch = rng.pick(candidates.length > 0 ? candidates : threshold);
    const status = await this.act('channel pay now', 'POST', `/api/channels/${ch.id}/payout`, undefined, [201, 409]);
    return `pay now on channel ${ch.id}${offered.has(ch.id) ? ' (offered by the overview)' : ''}: ${status}`;
  }

  /**
   * Switches one channel paid through an exchange on Tron between instant and threshold (a direct channel keeps its
   * strategy: the checks compare its owner's balance on chain with its direct payouts).
   */
  async switchStrategy(rng: Rng, channels: readonly ChaosChannel[]): Promise<string> {
    const trx = channels.filter((c) => c.kind === 'instant_usdt_trx' || c.kind === 'threshold_usdt_trx');
    if (trx.length === 0) return 'strategy switch: no Tron channel';
    const ch = rng.pick(trx);
    const { thresholdUsd: _dropped, ...rest } = ch.body;
    const body =
      ch.body.payoutStrategy === 'instant'
        ? { ...rest, payoutStrategy: 'threshold', thresholdUsd: '25' }
        : { ...rest, payoutStrategy: 'instant' };
    const status = await this.act('channel strategy switch', 'PUT', `/api/channels/${ch.id}`, body, [200]);
    if (status === 200) ch.body = body;
    return `channel ${ch.id} switched from ${rest.payoutStrategy} to ${body.payoutStrategy}: ${status}`;
  }
}
