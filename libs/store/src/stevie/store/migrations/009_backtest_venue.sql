-- The venue of each backtest decision: an L2 run decides on spot and USD-M books of the same
-- symbol, whose prices differ by the basis, so a decision's reward must be read on its own
-- venue's later price. Bar runs (one venue) and rows written before this column keep ''.
ALTER TABLE backtest_decisions ADD COLUMN IF NOT EXISTS venue TEXT NOT NULL DEFAULT '';
