"""gunicorn entry: `gunicorn --worker-class gthread --workers 1 --threads 32 wsgi:app`.

Exactly one worker: the engine lives in the worker, and two workers would be two engines.
"""

import logging
import sys

from Webapp import create_app
from Webapp.config.params import ParamsError
from Webapp.config.settings import SettingsError
from Webapp.execution.runtime import StartupError
from Webapp.services import start_services
from Webapp.storage.users import count_users

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

try:
    app = create_app()
    start_services(app)
except (SettingsError, ParamsError, StartupError) as exc:
    # A plain message in the journal, not a traceback. Exit code 4 is gunicorn's
    # "app load error": the arbiter halts instead of respawning the worker forever.
    print(f"Ladder cannot start: {exc}", file=sys.stderr)
    sys.exit(4)

with app.extensions["ladder"].sessions() as _session:
    if not count_users(_session):
        # No password in the journal: the operator creates the first admin by hand.
        logging.getLogger("wsgi").warning(
            "no users yet: create one with `flask --app Webapp users create admin --role admin`"
        )
