"""execution: the decision loop — context, router, sizing, risk check, paper fill, audit, reward."""
