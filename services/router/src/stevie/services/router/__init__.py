"""router: Bayesian linear Thompson sampling over trading policies."""
