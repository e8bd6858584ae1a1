"""budgeter: request-weight budgets per external provider; every venue REST call asks it first."""
