"""features: rolling microstructure features per venue+symbol from books and trades."""
