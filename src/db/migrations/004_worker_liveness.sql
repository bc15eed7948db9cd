-- The queue's own worker ids of each payrail worker process: when a process stops beating (killed, frozen), its
-- locks on jobs and queues are released for the others instead of waiting out the queue's 4-hour lock expiry.
alter table worker_heartbeats add column queue_worker_ids text[] not null default '{}';
