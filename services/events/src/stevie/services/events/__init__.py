"""events: event ingestion, local sentence embeddings and their projection into the router context."""
