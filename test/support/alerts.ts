/** Alerts as the API lists them, for tests that check what a person would be told. */
import type { TestPayrail } from './payrail.ts';

export interface OpenAlert {
  rule: string;
  subject: string;
  severity: string;
  message: string;
  details: Record<string, unknown>;
}

/** The open alerts of `rule` about `subject` (a payment id, say), from GET /api/alerts. */
export async function openAlerts(payrail: TestPayrail, rule: string, subject: unknown): Promise<OpenAlert[]> {
  const { alerts } = (await payrail.request('GET', '/api/alerts?state=open&limit=500')).body as { alerts: OpenAlert[] };
  return alerts.filter((a) => a.rule === rule && a.subject === String(subject));
}
