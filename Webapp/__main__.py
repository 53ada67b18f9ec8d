"""`python -m Webapp`: the embedded default (web + engine in one process, paper mode, sim feed)."""

from __future__ import annotations

import logging
import socket
import sys

from Webapp import create_app
from Webapp.config.params import ParamsError
from Webapp.config.settings import SettingsError, load_settings
from Webapp.execution.runtime import StartupError
from Webapp.services import ensure_first_admin, start_services, stop_services
from Webapp.web.extensions import socketio


class PortTaken(Exception):
    """The listening address is in use: checked before anything is announced."""


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortTaken(
                f"{host}:{port}: {exc.strerror or exc} (another Ladder running? "
                "set PORT to use another port)"
            ) from None


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings()
        _check_port_free(settings.host, settings.port)
        app = create_app(settings=settings)
        start_services(app)
    except (SettingsError, ParamsError, StartupError, PortTaken) as exc:
        print(f"Ladder cannot start: {exc}", file=sys.stderr)
        return 2
    password = ensure_first_admin(app)
    url = f"http://{settings.host}:{settings.port}/"
    if password:
        print(
            "\n  First start: created the admin user.\n"
            f"    username: admin\n    password: {password}\n"
            "  It is shown only this once. Change it after logging in (Account → Change password)\n"
            "  or with: .venv/bin/flask --app Webapp users set-password admin\n",
            flush=True,
        )
    print(
        f"  Ladder ({settings.trading_mode.value} mode, {settings.feed.value} feed) on {url}\n",
        flush=True,
    )
    # Werkzeug's server is fine on 127.0.0.1 for one trader; production uses gunicorn (wsgi.py).
    try:
        socketio.run(
            app,
            host=settings.host,
            port=settings.port,
            allow_unsafe_werkzeug=True,
            use_reloader=False,
            log_output=False,
        )
    except OSError as exc:  # typically the port is taken by another process
        print(
            f"Ladder cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 2
    finally:
        stop_services(app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
