"""The app database: SQLAlchemy models, sessions and migrations (no Flask here)."""
