/**
 * The pipeline's job handlers, wired to their stage functions. Payloads are parsed at the edge like any input.
 */
import type { CronItem, Task, TaskList } from 'graphile-worker';
import { z } from 'zod';
import { periodic, PERIODIC, tasksRunBy, type TaskName } from '../jobs/index.ts';
import {
  convertPendingPayments,
  conversionTransferHooks,
  CONVERSION_BATCH_QUEUE,
  createConversionExchange,
} from './conversion/run.ts';
import type { StageDeps } from './interfaces.ts';
import { confirmPayment, type ConfirmDeps } from './payment/confirm.ts';
import { openInstantPayout, payoutTransferHooks, runPayout } from './payout/run.ts';
import { openQueuedPayouts } from './payout/open-set.ts';
import { pollPayout } from './payout/poll.ts';
import { reconcile } from './reconcile/reconcile.ts';
import { pollConversion } from './conversion/settle.ts';
import { runThresholdCheck } from './payout/threshold.ts';
import { openingSettings } from './payout/send-at-opening.ts';
import { confirmTransfer, sendTransfer, type TransferHooksByPurpose } from './transfer/index.ts';

/** Tasks this version runs; any other queued job waits, visible, for a version that does. */
export const HANDLED_TASKS: readonly TaskName[] = tasksRunBy('pipeline');

const MAX_CONVERSIONS_PER_RUN = 20;

const conversionPayload = z.object({ conversionId: z.string().min(1) });
const transferPayload = z.object({ transferId: z.string().min(1) });
const payoutPayload = z.object({ payoutId: z.string().min(1) });
const batchPayload = z.object({ batchId: z.string().min(1) });
const channelPayload = z.object({ channelId: z.string().min(1) });
const paymentPayload = z.object({ paymentId: z.string().regex(/^[1-9][0-9]{0,19}$/) });

export function pipelineTasks(deps: StageDeps): Partial<Record<TaskName, Task>> {
  const hooks: TransferHooksByPurpose = {
    conversion: conversionTransferHooks(deps),
    payout: payoutTransferHooks(deps),
  };
  return {
    payout_instant: async (payload) => {
      await openInstantPayout(deps, paymentPayload.parse(payload).paymentId);
      // The payments credited after it usually wait in the queue too: opened together (payout/open-set.ts).
      await openQueuedPayouts(deps);
    },
    payout_run: async (payload) => runPayout(deps, payoutPayload.parse(payload).payoutId),
    payout_poll: async (payload) => pollPayout(deps, payoutPayload.parse(payload).payoutId),
    payout_batch: async (payload) => runPayout(deps, batchPayload.parse(payload).batchId),
    threshold_check: async (payload) => {
      const { channelId } = channelPayload.parse(payload);
      const { sent } = await runThresholdCheck(deps.db, [channelId], openingSettings(deps));
      for (const payoutId of sent)
        deps.logger.info(
          { event: 'payout_transfer_created', payoutId, asset: 'usdt', channelId },
          'direct payout transfer recorded as its batch was opened',
        );
    },
    conversion_batch: periodic('conversion_batch', () => convertPendingPayments(deps, MAX_CONVERSIONS_PER_RUN)),
    conversion_exchange: async (payload) =>
      createConversionExchange(deps, conversionPayload.parse(payload).conversionId),
    conversion_poll: async (payload) => pollConversion(deps, conversionPayload.parse(payload).conversionId),
    transfer_send: async (payload) => sendTransfer(deps, hooks, transferPayload.parse(payload).transferId),
    transfer_confirm: async (payload) => confirmTransfer(deps, hooks, transferPayload.parse(payload).transferId),
    reconcile: periodic('reconcile', async () => {
      await reconcile(deps);
    }),
  };
}

/** The NOWPayments check of a crediting IPN: its own deps (the API client, intake's credit settings). */
export function confirmTasks(deps: ConfirmDeps): Partial<Record<TaskName, Task>> {
  return {
    payment_confirm: async (payload) => {
      await confirmPayment(deps, paymentPayload.parse(payload).paymentId);
    },
  };
}

/**
 * Periodic jobs. The conversion batch runs every interval whether or not intake nudged it; the reconciler every
 * RECONCILE_INTERVAL (a missed run is not made up: the next one looks at everything again).
 */
export function pipelineCron(options: { conversionIntervalMs: number; reconcileIntervalMs: number }): CronItem[] {
  return [
    {
      task: 'conversion_batch',
      match: everyMinutes(options.conversionIntervalMs, 'conversion interval'),
      identifier: 'conversion_batch',
      options: { ...PERIODIC, queueName: CONVERSION_BATCH_QUEUE },
    },
    {
      task: 'reconcile',
      match: everyMinutes(options.reconcileIntervalMs, 'reconcile interval'),
      identifier: 'reconcile',
      options: PERIODIC,
    },
  ];
}

function everyMinutes(ms: number, what: string): string {
  const minutes = ms / 60_000;
  if (!Number.isInteger(minutes) || minutes < 1 || minutes > 59)
    throw new Error(`${what} must be whole minutes from 1 to 59`);
  return `*/${minutes} * * * *`;
}

export type { TaskList };
