"""Market data: latest prices, universes, candles and the feeds that fill them."""
