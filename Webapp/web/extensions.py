"""Flask extension objects, created once and bound to the app in create_app()."""

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_socketio import SocketIO
from flask_wtf import CSRFProtect

login_manager = LoginManager()
csrf = CSRFProtect()
# One gunicorn worker, so an in-memory store counts every attempt the app sees.
limiter = Limiter(key_func=get_remote_address, storage_uri="memory://", default_limits=[])
# threading mode: eventlet is deprecated and its green threads clash with
# KiteTicker's Twisted reactor thread (see README).
socketio = SocketIO(async_mode="threading")
