"""The browser side: blueprints, forms, Socket.IO events and CLI commands."""
