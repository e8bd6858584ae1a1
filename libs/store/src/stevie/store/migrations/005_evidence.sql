-- Evidence: the model registry (router posteriors + policy hyper-parameters, the record of
-- truth for which model is current), its audited history, DSR trials, PBT lineage and the
-- calibration nudges applied.
CREATE TABLE IF NOT EXISTS models (
    id          TEXT PRIMARY KEY,
    kind        TEXT        NOT NULL,            -- checkpoint | pbt | manual
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    source      TEXT        NOT NULL,            -- who wrote it (router session, pbt run)
    seed        BIGINT,
    data        TEXT        NOT NULL DEFAULT '', -- the data it came from
    parent      TEXT,                            -- the model it continued from
    posterior   JSONB,                           -- RouterPosterior (null: parameters only)
    updates     JSONB       NOT NULL DEFAULT '{}',
    params      JSONB       NOT NULL DEFAULT '{}',
    metrics     JSONB       NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS models_created_at ON models (created_at);

-- One row per slot ('router'): the current model. Changed only with a model_history row.
CREATE TABLE IF NOT EXISTS model_current (
    slot      TEXT PRIMARY KEY,
    model_id  TEXT        NOT NULL REFERENCES models (id),
    since     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS model_history (
    id          BIGSERIAL PRIMARY KEY,
    ts          TIMESTAMPTZ NOT NULL DEFAULT now(),
    action      TEXT        NOT NULL,            -- register | checkpoint | promote | rollback
    model_id    TEXT        NOT NULL,
    previous_id TEXT,
    actor       TEXT        NOT NULL DEFAULT '',
    detail      TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS model_history_model ON model_history (model_id, ts);

-- Every strategy configuration evaluated (backtest run, parameter set, PBT member): the
-- number of trials and the dispersion of their Sharpe ratios deflate the Sharpe ratio.
CREATE TABLE IF NOT EXISTS trials (
    ref        TEXT PRIMARY KEY,                 -- idempotent: one row per evaluated configuration
    kind       TEXT             NOT NULL,        -- backtest | params | pbt
    ts         TIMESTAMPTZ      NOT NULL DEFAULT now(),
    sharpe     DOUBLE PRECISION NOT NULL,        -- per period
    n_periods  INTEGER          NOT NULL,
    params     JSONB            NOT NULL DEFAULT '{}'
);

CREATE TABLE IF NOT EXISTS pbt_lineage (
    run_id       TEXT        NOT NULL,
    version_id   TEXT        NOT NULL,
    member       INTEGER     NOT NULL,
    parent       TEXT,
    generation   INTEGER     NOT NULL,
    params       JSONB       NOT NULL,
    score        DOUBLE PRECISION,
    window_start INTEGER     NOT NULL,
    window_stop  INTEGER     NOT NULL,
    exploited    BOOLEAN     NOT NULL,
    ts           TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, version_id)
);
CREATE INDEX IF NOT EXISTS pbt_lineage_ts ON pbt_lineage (ts);

CREATE TABLE IF NOT EXISTS nudges_audit (
    id                 BIGSERIAL PRIMARY KEY,
    ts                 TIMESTAMPTZ      NOT NULL DEFAULT now(),
    router_prior_delta DOUBLE PRECISION NOT NULL,
    sizing_cap_delta   DOUBLE PRECISION NOT NULL,
    ece                DOUBLE PRECISION,
    n                  INTEGER          NOT NULL,
    explicit           BOOLEAN          NOT NULL,
    actor              TEXT             NOT NULL DEFAULT ''
);
