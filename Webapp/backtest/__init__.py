"""Backtests: stored candles played through the same engine that trades paper and live."""
