"""A local simulator of the Kite Connect APIs the app uses, for tests without Zerodha."""
