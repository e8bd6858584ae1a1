-- Book-state changes as the venue router sees them (LIVE / SYNCING / STALE, wall time),
-- written by the venues service; the venue report's downtime is computed from it.
CREATE TABLE IF NOT EXISTS venue_state_log (
    id      BIGSERIAL PRIMARY KEY,
    venue   TEXT        NOT NULL,
    symbol  TEXT        NOT NULL,
    state   TEXT        NOT NULL,
    reason  TEXT        NOT NULL DEFAULT '',
    ts      TIMESTAMPTZ NOT NULL        -- wall time the book entered the state
);
CREATE INDEX IF NOT EXISTS venue_state_log_venue_symbol_ts ON venue_state_log (venue, symbol, ts);
