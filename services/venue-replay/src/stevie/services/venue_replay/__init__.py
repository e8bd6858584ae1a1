"""venue-replay: serves recorded Binance captures over Binance's own REST + WebSocket protocol."""
