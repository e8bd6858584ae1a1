-- venue: the book of each backtest decision. An L2 run decides on spot and USD-M books of the
-- same symbol, whose prices differ by the basis, so a decision's reward must be read on its own
-- venue's later price. Bar runs (one venue) and rows written before this column keep ''.
ALTER TABLE backtest_decisions ADD COLUMN IF NOT EXISTS venue TEXT NOT NULL DEFAULT '';
-- mean_bps / width_bps: the router's posterior mean score of the chosen policy (its sampled score
-- minus the exploration bonus) and the posterior width, in reward bps: the forecast that
-- evidence's calibration scores (Φ(mean / width) against reward > 0). NULL for older rows.
ALTER TABLE backtest_decisions ADD COLUMN IF NOT EXISTS mean_bps DOUBLE PRECISION;
ALTER TABLE backtest_decisions ADD COLUMN IF NOT EXISTS width_bps DOUBLE PRECISION;
