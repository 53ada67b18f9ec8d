"""Brokers: the interface, KiteBroker (live), PaperBroker (paper and backtest) and charges."""
