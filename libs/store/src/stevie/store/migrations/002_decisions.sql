-- Decision audits and execution records, written idempotently by the reporter
-- (event id primary key: a redelivered event is not written twice).
CREATE TABLE IF NOT EXISTS audits (
    event_id    TEXT PRIMARY KEY,
    policy_id   TEXT        NOT NULL,
    ts          TIMESTAMPTZ NOT NULL,      -- decision event time
    venue       TEXT        NOT NULL,
    symbol      TEXT        NOT NULL,
    provenance  CHAR(64)    NOT NULL,      -- sha256 hex of (feature window, context, decision)
    body        JSONB       NOT NULL       -- the whole Audit message
);
CREATE INDEX IF NOT EXISTS audits_policy_id_ts ON audits (policy_id, ts);

CREATE TABLE IF NOT EXISTS executions (
    event_id       TEXT PRIMARY KEY,
    symbol         TEXT             NOT NULL,
    venue          TEXT             NOT NULL,
    policy_id      TEXT             NOT NULL,
    requested_size DOUBLE PRECISION NOT NULL,
    final_size     DOUBLE PRECISION NOT NULL,
    fill_price     DOUBLE PRECISION,
    blocked        BOOLEAN          NOT NULL,
    reason         TEXT             NOT NULL,
    ts             TIMESTAMPTZ      NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_symbol_ts ON executions (symbol, ts);
