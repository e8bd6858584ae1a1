-- 1-minute (and other) bars built from trades, and the L2 resync log.
CREATE TABLE IF NOT EXISTS bars (
    venue        TEXT             NOT NULL,
    symbol       TEXT             NOT NULL,
    timeframe    TEXT             NOT NULL,
    ts           TIMESTAMPTZ      NOT NULL,   -- bar open time (UTC)
    open         DOUBLE PRECISION NOT NULL,
    high         DOUBLE PRECISION NOT NULL,
    low          DOUBLE PRECISION NOT NULL,
    close        DOUBLE PRECISION NOT NULL,
    volume       DOUBLE PRECISION NOT NULL,  -- base units
    trades       INTEGER          NOT NULL,
    PRIMARY KEY (venue, symbol, timeframe, ts)
);
CREATE INDEX IF NOT EXISTS bars_symbol_timeframe_ts ON bars (symbol, timeframe, ts);

CREATE TABLE IF NOT EXISTS l2_resync_log (
    id           BIGSERIAL PRIMARY KEY,
    venue        TEXT        NOT NULL,
    symbol       TEXT        NOT NULL,
    seq          BIGINT      NOT NULL,       -- last applied update id when the resync began
    reason       TEXT        NOT NULL,
    ts           TIMESTAMPTZ NOT NULL        -- event time
);
CREATE INDEX IF NOT EXISTS l2_resync_log_venue_symbol_seq ON l2_resync_log (venue, symbol, seq);
