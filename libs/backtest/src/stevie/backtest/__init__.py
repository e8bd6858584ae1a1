"""stevie.backtest: the live service cores run deterministically over recorded data."""
