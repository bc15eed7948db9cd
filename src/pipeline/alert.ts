import type { Kysely } from 'kysely';
import { raiseAlert, type AlertInput } from '../alerts/index.ts';
import type { Database } from '../db/index.ts';
import type { Logger } from '../log.ts';
import type { StageDeps } from './interfaces.ts';

/**
 * An event alert raised by a stage: the same log line as before (through the stage's logger, with its bound ids),
 * stored, and sent to the webhook when one is configured. In `db` when given (the caller's transaction).
 */
export function stageAlert(
  deps: StageDeps,
  logger: Logger,
  alert: AlertInput,
  db: Kysely<Database> = deps.db,
  options: { logged?: boolean } = {},
): Promise<void> {
  return raiseAlert(db, alert, { logger, notify: deps.notifyAlerts === true, ...options });
}
