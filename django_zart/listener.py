"""LISTEN for work made due on PostgreSQL, so idle workers claim it at once.

Whatever makes work due now (a start, an event for a waiting execution, a workflow retry)
sends ``NOTIFY zart_due, '<queue>'`` inside its transaction; PostgreSQL delivers it on
commit. The listener holds its own connection, outside Django's, since a LISTEN must stay
open between polls; it connects through the database alias ``ZART["LISTEN_DATABASE"]``.
Polling remains the fallback: a lost notification costs at most one poll interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from django.db import connections

from .conf import get_settings
from .db.postgresql import NOTIFY_CHANNEL
from .outages import OutageLog

logger = logging.getLogger(__name__)


class Listener:
    def __init__(self, queues: list[str], on_due: Callable[[], None], outage: OutageLog) -> None:
        self.queues = set(queues)
        self.on_due = on_due
        self.outage = outage
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zart-listen", daemon=True)
        self.ready = threading.Event()
        self.listening = False
        """Whether a LISTEN is open now: notifications reach this worker."""
        self._failures = 0
        """Failed connections since the last LISTEN that worked."""

    def start(self) -> None:
        self._thread.start()
        self.ready.wait(5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except psycopg.Error as exc:
                # The session broke (a restart, a terminated backend). A session cut
                # alone is back at once, silently; when reconnecting fails too, the
                # database is down: report the outage and retry after a backoff.
                # Meanwhile the worker polls.
                self._failures += 1
                if self._failures > 1:
                    self._stop.wait(self.outage.failed("listening for due work", exc))
            except Exception:
                logger.exception("LISTEN failed; polling until it is back")
                self._stop.wait(1)

    def _listen(self) -> None:
        # Behind a transaction pooler (PgBouncer) a LISTEN needs a session of its own:
        # ZART["LISTEN_DATABASE"] names a direct connection to the server.
        params = connections[get_settings().listen_database].get_connection_params()
        params.pop("cursor_factory", None)
        with psycopg.connect(**params, autocommit=True) as conn:
            conn.execute("LISTEN %s" % NOTIFY_CHANNEL)
            self.listening = True
            try:
                self._failures = 0
                self.ready.set()
                self.outage.succeeded()
                self.on_due()  # anything made due while we were not listening
                while not self._stop.is_set():
                    for notify in conn.notifies(timeout=0.5):
                        if notify.payload in self.queues:
                            self.on_due()
            finally:
                self.listening = False
