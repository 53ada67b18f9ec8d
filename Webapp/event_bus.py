"""In-process publish/subscribe bus that carries engine events to the UI bridge and recorders."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

_log = logging.getLogger(__name__)

Handler = Callable[[str, Any], None]

WILDCARD = "*"


class EventBus:
    """Synchronous, thread-safe topic bus.

    `publish` runs each handler in the publisher's thread, outside the bus lock,
    so a handler may publish, subscribe or unsubscribe without deadlocking.
    Handlers of the topic run first, in subscription order, then the `"*"`
    handlers. A handler that raises is logged and skipped; the publisher and the
    other handlers never see the exception.

    Subscriptions are copy-on-write tuples: a publish in flight delivers to the
    handlers that were subscribed when it started, so a handler unsubscribed
    during that publish may still receive that one event.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: dict[str, tuple[Handler, ...]] = {}

    def subscribe(self, topic: str, handler: Handler) -> Callable[[], None]:
        """Call `handler(topic, payload)` for every publish on `topic` ("*" for all topics).

        Returns a function that removes this subscription; calling it again is a no-op.
        """
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topic must be a non-empty string, got {topic!r}")
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        with self._lock:
            self._handlers[topic] = self._handlers.get(topic, ()) + (handler,)

        subscribed = True

        def unsubscribe() -> None:
            nonlocal subscribed
            with self._lock:
                if not subscribed:
                    return
                subscribed = False
                handlers = list(self._handlers.get(topic, ()))
                for index, registered in enumerate(handlers):
                    if registered is handler:
                        del handlers[index]
                        break
                if handlers:
                    self._handlers[topic] = tuple(handlers)
                else:
                    self._handlers.pop(topic, None)

        return unsubscribe

    def publish(self, topic: str, payload: Any) -> None:
        """Deliver `payload` to the handlers of `topic` and of "*", in this thread."""
        with self._lock:
            handlers = self._handlers.get(topic, ())
            if topic != WILDCARD:
                handlers += self._handlers.get(WILDCARD, ())
        for handler in handlers:
            try:
                handler(topic, payload)
            except Exception:
                _log.exception("event handler %r failed on topic %r", handler, topic)

    def subscriber_count(self, topic: str | None = None) -> int:
        """How many subscriptions `topic` has (all topics when None); for health pages and tests."""
        with self._lock:
            if topic is None:
                return sum(len(handlers) for handlers in self._handlers.values())
            return len(self._handlers.get(topic, ()))
