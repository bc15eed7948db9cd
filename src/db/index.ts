export { openPool, type Db, type DatabaseHandle } from './pool.ts';
export { EmbeddedUnavailable, startEmbeddedPostgres, type EmbeddedPostgres } from './embedded.ts';
export { migrate, listMigrations, pendingMigrations } from './migrate.ts';
export type * from './schema.ts';
export {
  TRANSFER_STATES,
  TRANSFER_ACTIONS_REQUESTED,
  CONVERSION_STATES,
  PAYOUT_STATES,
  ENDED_PAYOUT_STATES,
  OPEN_PAYOUT_STATES,
} from './schema.ts';
export { recordAudit, type AuditEntry } from './audit.ts';
