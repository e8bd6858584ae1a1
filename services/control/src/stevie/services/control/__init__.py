"""control: feature flags, blue/green router deployment with canary cutover, and the canary ladder."""
