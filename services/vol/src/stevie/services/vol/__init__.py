"""vol: volatility forecasts (HAR-RV, GARCH), option smiles and portfolio CVaR allocation."""
