"""book-maintainer: Binance L2 books (snapshot + diffs), trades and 1-minute bars."""
