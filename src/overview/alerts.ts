/** Open alerts, as the alert engine stores them (migration 010): read only, critical first, oldest first. */
import { sql } from 'kysely';
import type { AlertSeverity, Db } from '../db/index.ts';
import { seconds } from './amounts.ts';
import type { OpenAlertView } from './types.ts';

const ALERTS_SHOWN = 100;

export async function openAlerts(db: Db): Promise<{ open: number; items: OpenAlertView[] }> {
  const count = await sql<{ n: number }>`select count(*)::int as n from alerts where resolved_at is null`.execute(db);
  const { rows } = await sql<{
    id: string;
    rule: string;
    subject: string;
    severity: AlertSeverity;
    message: string;
    details: Record<string, unknown>;
    first_seen_at: Date;
    last_seen_at: Date;
    age: string;
  }>`
    select id::text as id, rule, subject, severity, message, details, first_seen_at, last_seen_at,
           extract(epoch from now() - first_seen_at)::bigint::text as age
    from alerts where resolved_at is null
    order by (severity = 'critical') desc, first_seen_at, id
    limit ${ALERTS_SHOWN}`.execute(db);
  return {
    open: count.rows[0]?.n ?? 0,
    items: rows.map((r) => ({
      id: r.id,
      rule: r.rule,
      subject: r.subject,
      severity: r.severity,
      message: r.message,
      details: r.details,
      firstSeenAt: r.first_seen_at.toISOString(),
      lastSeenAt: r.last_seen_at.toISOString(),
      ageSeconds: seconds(r.age),
    })),
  };
}
