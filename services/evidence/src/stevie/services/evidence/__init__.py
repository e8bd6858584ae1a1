"""evidence: off-policy estimates, SPA/deflated-Sharpe promotion, the model registry, calibration and PBT lineage."""
