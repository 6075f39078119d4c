-- log_events becomes range-partitioned by event time, keeping every row.
--
-- PostgreSQL requires the partition key in every unique index, so the dedup key becomes
-- (id, event_time). event_time is fixed once, at the gateway's acceptance (the client's
-- `timestamp`, or the moment of receipt when it gave none), and travels in the Kafka record:
-- a redelivered or replayed record lands in the same partition and conflicts there. The
-- consumer also skips an id already stored within one partition interval of the new copy's
-- event time (a client re-posting the same id with a new timestamp).
--
-- Partitions are aligned ranges of the consumer's `storage.partition_interval` (a day by default,
-- from midnight UTC), created ahead of time and dropped by retention (server/contracts/src/
-- schema/partitions.rs). This migration makes the partitions of the last 7 days and the next
-- 3 (the defaults) that hold rows; every other row goes to the default partition, which the
-- first maintenance pass sorts into partitions of the configured interval (or drops, if older
-- than the retention).

ALTER TABLE log_events RENAME TO log_events_unpartitioned;
ALTER INDEX log_events_pkey RENAME TO log_events_unpartitioned_pkey;
ALTER INDEX log_events_org_time RENAME TO log_events_unpartitioned_org_time;

CREATE TABLE log_events (
    id              uuid        NOT NULL,
    organization_id text        NOT NULL,
    level           text        NOT NULL
        CONSTRAINT log_events_level_check CHECK (level IN ('TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL')),
    message         text        NOT NULL,
    source          text        NOT NULL,
    event_time      timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    trace_id        text,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    PRIMARY KEY (id, event_time)
) PARTITION BY RANGE (event_time);

-- Per-organization time queries, newest first, with the id as a keyset tie-breaker.
CREATE INDEX log_events_org_time ON log_events (organization_id, event_time DESC, id DESC);

-- Whatever no partition covers (a timestamp far ahead, or older than the retention) lands here:
-- an event is never refused for its time.
CREATE TABLE log_events_default PARTITION OF log_events DEFAULT;

DO $$
DECLARE
    day timestamptz;
BEGIN
    FOR day IN
        SELECT DISTINCT date_trunc('day', event_time, 'UTC') FROM log_events_unpartitioned
        WHERE event_time >= date_trunc('day', now(), 'UTC') - interval '7 days'
          AND event_time < date_trunc('day', now(), 'UTC') + interval '4 days'
    LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF log_events FOR VALUES FROM (%L) TO (%L)',
                       'log_events_p' || to_char(day AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MI'),
                       day, day + interval '1 day');
    END LOOP;
END $$;

INSERT INTO log_events SELECT * FROM log_events_unpartitioned;
DROP TABLE log_events_unpartitioned;
