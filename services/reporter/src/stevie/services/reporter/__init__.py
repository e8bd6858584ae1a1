"""reporter: durable audit and execution events → PostgreSQL; audit queries."""
