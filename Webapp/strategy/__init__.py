"""The momentum ladder's rules, pure: ladder, signals, limits and the actions they decide."""
