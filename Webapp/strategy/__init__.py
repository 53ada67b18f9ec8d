"""The momentum ladder: pure rules, signals, and the engine thread that applies them."""
