-- stevie backtest runs and their decisions (written by stevie.backtest.store.save_run, one
-- transaction per run: a re-run with the same run id replaces the old rows). Read by the
-- evidence services (off-policy estimates, SPA promotion, calibration, PBT).
--
-- backtest_runs: one row per run.
--   run_id       first 16 hex of SHA-256(mode, data hashes, settings incl. seed) — same command, same id
--   mode         'bars' (1-minute klines) or 'l2' (order-book captures)
--   git_revision the code revision that produced it (+ '-dirty')
--   seed         router RNG seed
--   settings     the run's settings (BarSettings / L2Settings as JSON)
--   data         input files with their SHA-256 and windows
--   metrics      summary.json "metrics" (return, drawdown, Sharpe, turnover, costs, per policy)
--   created_at   when it was written (wall clock; not part of any result)
CREATE TABLE IF NOT EXISTS backtest_runs (
    run_id       TEXT PRIMARY KEY,
    mode         TEXT        NOT NULL,
    git_revision TEXT        NOT NULL,
    seed         BIGINT      NOT NULL,
    settings     JSONB       NOT NULL,
    data         JSONB       NOT NULL,
    metrics      JSONB       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- backtest_decisions: one row per decision, the columns of decisions.parquet.
--   seq            decision number within the run (0-based, event-time order)
--   ts             decision event time; ts_event_ns the same in ns since the epoch
--   symbol, policy_id   the book and the policy the router chose (ids p_*)
--   propensity     P(router picks policy_id | context), Monte-Carlo over the posterior
--   signal         chosen policy's signal in {-1, 0, 1}; target_size base units (signed)
--   order_size     signed base units filled (0 when nothing traded)
--   fill_price     quote units, NULL when nothing traded; cost_bps impact + half spread, NULL then too
--   fee_quote, funding_quote   fee of the fill; funding paid since the symbol's previous decision
--   reward         signal · (price(t+H) − price(t))/price(t) in bps (what the router learnt), NULL if H not reached
--   blocked, reason    risk-guard verdict ('no_order' when the change was below the minimum)
--   position_after base units after the fill; price = last close at t; equity_quote after the decision
--   context        {ctx_<name>: value} (the router context), shadow {policy_id: signal} of every policy
CREATE TABLE IF NOT EXISTS backtest_decisions (
    run_id         TEXT             NOT NULL REFERENCES backtest_runs (run_id) ON DELETE CASCADE,
    seq            INTEGER          NOT NULL,
    ts             TIMESTAMPTZ      NOT NULL,
    ts_event_ns    BIGINT           NOT NULL,
    symbol         TEXT             NOT NULL,
    policy_id      TEXT             NOT NULL,
    propensity     DOUBLE PRECISION NOT NULL,
    signal         SMALLINT         NOT NULL,
    target_size    DOUBLE PRECISION NOT NULL,
    order_size     DOUBLE PRECISION NOT NULL,
    fill_price     DOUBLE PRECISION,
    cost_bps       DOUBLE PRECISION,
    fee_quote      DOUBLE PRECISION NOT NULL,
    funding_quote  DOUBLE PRECISION NOT NULL,
    reward         DOUBLE PRECISION,
    blocked        BOOLEAN          NOT NULL,
    reason         TEXT             NOT NULL,
    position_after DOUBLE PRECISION NOT NULL,
    price          DOUBLE PRECISION NOT NULL,
    equity_quote   DOUBLE PRECISION NOT NULL,
    context        JSONB            NOT NULL,
    shadow         JSONB            NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX IF NOT EXISTS backtest_decisions_policy_ts ON backtest_decisions (run_id, policy_id, ts);
CREATE INDEX IF NOT EXISTS backtest_decisions_symbol_ts ON backtest_decisions (run_id, symbol, ts);
