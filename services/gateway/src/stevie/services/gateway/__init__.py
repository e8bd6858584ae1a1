"""gateway: the HTTP API on 127.0.0.1:5000 over the bus."""
