"""Carrying the rules out: the leg lifecycle, the engine thread, the order gateway, the inline
driver, reconciliation, the journal and one builder per driver (live, paper, backtest)."""
