"""Socket.IO for the data page: logged-in users join the room that hears import progress."""

from __future__ import annotations

from flask_login import current_user
from flask_socketio import disconnect, join_room

from Webapp.web.appstate import close_db
from Webapp.web.data import IMPORT_ROOM, current_import, import_payload
from Webapp.web.extensions import socketio

JOIN_EVENT = "data_import_join"


@socketio.on(JOIN_EVENT)
def on_data_import_join(_data=None) -> dict:
    """Join IMPORT_ROOM; the ack carries the current import so the page starts in step.

    The connect handler already refuses anonymous sockets; this checks again
    because the session may have ended (logout, password change) since then.
    """
    try:
        allowed = current_user.is_authenticated
    finally:
        close_db()
    if not allowed:
        disconnect()
        return {"ok": False, "error": "login required"}
    join_room(IMPORT_ROOM)
    job = current_import()
    return {"ok": True, "job": None if job is None else import_payload(job)}
