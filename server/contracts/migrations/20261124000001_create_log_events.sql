-- One row per event, keyed by the event id so a redelivered record stores nothing twice.
CREATE TABLE IF NOT EXISTS log_events (
    id              uuid        PRIMARY KEY,
    organization_id text        NOT NULL,
    level           text        NOT NULL CHECK (level IN ('TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL')),
    message         text        NOT NULL,
    source          text        NOT NULL,
    event_time      timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    trace_id        text,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL
);

-- Per-organization time queries, newest first, with the id as a keyset tie-breaker.
CREATE INDEX IF NOT EXISTS log_events_org_time
    ON log_events (organization_id, event_time DESC, id DESC);
