/** Rules about the platform's event webhooks: an endpoint that keeps failing is alerted, never dropped silently. */
import { sql } from 'kysely';
import type { StateRule } from './rule-types.ts';

/** Failed attempts in a row at the head of a subject's line before the endpoint counts as failing. */
export const ENDPOINT_FAILING_ATTEMPTS = 3;

const eventEndpointFailing: StateRule = {
  name: 'event_endpoint_failing',
  severity: 'warning',
  async evaluate({ db }) {
    const result = await sql<{ id: string; url: string; failing: number; given_up: number; last_error: string | null }>`
      select e.id::text as id, e.url,
        count(*) filter (where d.status = 'pending')::int as failing,
        count(*) filter (where d.status = 'failed')::int as given_up,
        (array_agg(d.last_error order by d.last_attempt_at desc))[1] as last_error
      from webhook_endpoints e
      join webhook_deliveries d on d.endpoint_id = e.id
      where e.deleted_at is null
        and (d.status = 'failed' or (d.status = 'pending' and d.attempts >= ${ENDPOINT_FAILING_ATTEMPTS}))
      group by e.id, e.url`.execute(db);
    return {
      firing: result.rows.map((row) => ({
        subject: row.id,
        message:
          row.given_up > 0
            ? `webhook endpoint ${row.id}: ${row.given_up} event deliveries given up (retry them once it answers), ${row.failing} still failing`
            : `webhook endpoint ${row.id}: ${row.failing} event deliveries failed ${ENDPOINT_FAILING_ATTEMPTS} or more times in a row`,
        details: {
          endpointId: row.id,
          url: new URL(row.url).origin,
          failing: row.failing,
          givenUp: row.given_up,
          lastError: row.last_error,
        },
      })),
    };
  },
};

export const eventRules: readonly StateRule[] = [eventEndpointFailing];
