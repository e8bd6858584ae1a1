-- Operations: feature-flag overrides, the audit of every operator/automatic change (flags,
-- blue/green deploy, canary ladder), and the data-quality quarantine.
CREATE TABLE IF NOT EXISTS flag_overrides (
    name        TEXT PRIMARY KEY,
    value       JSONB       NOT NULL,          -- true/false or a string ("strict")
    previous    JSONB,                         -- the value before this override
    updated_at  TIMESTAMPTZ NOT NULL,
    updated_by  TEXT        NOT NULL           -- operator token id (sha256 prefix), never the token
);

CREATE TABLE IF NOT EXISTS ops_audit (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT        NOT NULL,          -- flag | deploy | canary
    subject     TEXT        NOT NULL,          -- flag name, deployment, ladder
    old_value   JSONB,
    new_value   JSONB,
    actor       TEXT        NOT NULL,          -- token id, or "auto" for automatic transitions
    reason      TEXT        NOT NULL DEFAULT '',
    ts          TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS ops_audit_kind_ts ON ops_audit (kind, ts);

CREATE TABLE IF NOT EXISTS quarantine (
    id           BIGSERIAL PRIMARY KEY,
    source       TEXT        NOT NULL,         -- vol_history | live_bars | l2 | backtest
    venue        TEXT        NOT NULL,
    symbol       TEXT        NOT NULL,
    item_ts      TIMESTAMPTZ NOT NULL,         -- event time of the bad item (bar open time)
    reason       TEXT        NOT NULL,         -- spike | non_finite | ohlc_inconsistent | ...
    detail       TEXT        NOT NULL,         -- e.g. "robust z = 41.3 > 25 (window 240)"
    item         JSONB       NOT NULL,         -- the item as received
    replaced     BOOLEAN     NOT NULL,
    replacement  JSONB,                        -- what was used instead (REST klines refetch)
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS quarantine_source_created ON quarantine (source, created_at);
CREATE INDEX IF NOT EXISTS quarantine_symbol_item_ts ON quarantine (symbol, item_ts);
