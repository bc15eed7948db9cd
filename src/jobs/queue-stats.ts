import { sql } from 'kysely';
import type { Db } from '../db/index.ts';

export async function liveWorkers(db: Db, staleSeconds: number): Promise<number> {
  const result = await sql<{ n: number }>`
    select count(*)::int as n from worker_heartbeats where last_seen_at > now() - make_interval(secs => ${staleSeconds})`.execute(
    db,
  );
  return result.rows[0]?.n ?? 0;
}
