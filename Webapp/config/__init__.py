"""Settings from the environment and the strategy parameters from param.yaml."""
