-- Feature store (issue 10): every feature value the features service publishes, one row per
-- (venue, symbol, feature, event time), written idempotently (a re-sent row is not written
-- twice; the first write of a key wins). Event times are integer nanoseconds since the epoch,
-- the contracts' own unit, so a stored key equals the published message's ts_event_ns exactly.
CREATE TABLE IF NOT EXISTS feature_values (
    venue        TEXT             NOT NULL,
    symbol       TEXT             NOT NULL,
    feature      TEXT             NOT NULL,
    ts_event_ns  BIGINT           NOT NULL,
    value        DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (venue, symbol, feature, ts_event_ns)
);
-- The primary key is the index on (venue, symbol, feature, ts): a window read is one range scan.

-- What each stored feature vector was computed from (its lineage), so the same vector can be
-- recomputed offline from the recorded capture: the book's last applied update id and depth,
-- the kernel epoch (a kernel is reset on every resync / session restart) and the trades the
-- kernel had been fed in that epoch (first and last trade id, in arrival order).
CREATE TABLE IF NOT EXISTS feature_samples (
    venue        TEXT    NOT NULL,
    symbol       TEXT    NOT NULL,
    ts_event_ns  BIGINT  NOT NULL,
    run_id       TEXT    NOT NULL,   -- one features-service process
    epoch        INTEGER NOT NULL,   -- kernel resets of this venue+symbol before this vector, in that run
    n            INTEGER NOT NULL,   -- index of this vector within its epoch (0 = first book after the reset)
    seq          BIGINT  NOT NULL,   -- the book's last applied update id
    levels       INTEGER NOT NULL,   -- levels per side the published book carried (max of both sides)
    trade_first  BIGINT,             -- first trade id fed to the kernel in this epoch (NULL: none yet)
    trade_last   BIGINT,             -- last trade id fed before this book (NULL: none yet)
    PRIMARY KEY (venue, symbol, ts_event_ns)
);
CREATE INDEX IF NOT EXISTS feature_samples_run_epoch ON feature_samples (venue, symbol, run_id, epoch, n);
