"""risk-guards: pre-trade checks on every paper order."""
