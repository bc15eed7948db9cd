import type { Transaction } from 'kysely';
import type { Database } from './schema.ts';

/** Who did what to which subject, with what a person reading the log later needs to know. */
export interface AuditEntry {
  readonly actor: string;
  readonly action: string;
  readonly subject: string;
  readonly details: Record<string, unknown>;
}

/** One row of the audit log, in the caller's transaction: it exists if and only if the action it records committed. */
export async function recordAudit(trx: Transaction<Database>, entry: AuditEntry): Promise<void> {
  await trx
    .insertInto('audit_log')
    .values({
      actor: entry.actor,
      action: entry.action,
      subject: entry.subject,
      details: JSON.stringify(entry.details),
    })
    .execute();
}
