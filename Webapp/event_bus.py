"""In-process publish/subscribe bus that carries engine events to the UI bridge and recorders."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

_log = logging.getLogger(__name__)

Handler = Callable[[str, Any], None]

WILDCARD = "*"

C = TypeVar("C", bound=Callable[..., Any])


class Subscribers(Generic[C]):
    """Copy-on-write list of callbacks, shared by the bus and the LTP store.

    `current` is a tuple replaced on every change, so a hot path iterates it
    without taking the lock; `add` returns a remover that is safe to call twice.
    """

    __slots__ = ("_lock", "current")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current: tuple[C, ...] = ()

    def add(self, callback: C) -> Callable[[], None]:
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        with self._lock:
            self.current = self.current + (callback,)
        removed = False

        def remove() -> None:
            nonlocal removed
            with self._lock:
                if removed:
                    return
                removed = True
                # Only the first match: the same function may be subscribed twice.
                callbacks = list(self.current)
                for index, registered in enumerate(callbacks):
                    if registered is callback:
                        del callbacks[index]
                        break
                self.current = tuple(callbacks)

        return remove

    def __len__(self) -> int:
        return len(self.current)


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
        self._topics: dict[str, Subscribers[Handler]] = {}

    def subscribe(self, topic: str, handler: Handler) -> Callable[[], None]:
        """Call `handler(topic, payload)` for every publish on `topic` ("*" for all topics).

        Returns a function that removes this subscription; calling it again is a no-op.
        """
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topic must be a non-empty string, got {topic!r}")
        with self._lock:
            subscribers = self._topics.setdefault(topic, Subscribers())
        return subscribers.add(handler)

    def publish(self, topic: str, payload: Any) -> None:
        """Deliver `payload` to the handlers of `topic` and of "*", in this thread."""
        with self._lock:
            own, wildcard = self._topics.get(topic), self._topics.get(WILDCARD)
        handlers = own.current if own is not None else ()
        if topic != WILDCARD and wildcard is not None:
            handlers += wildcard.current
        for handler in handlers:
            try:
                handler(topic, payload)
            except Exception:
                _log.exception("event handler %r failed on topic %r", handler, topic)

    def subscriber_count(self, topic: str | None = None) -> int:
        """How many subscriptions `topic` has (all topics when None); for health pages and tests."""
        with self._lock:
            if topic is None:
                return sum(len(subscribers) for subscribers in self._topics.values())
            return len(self._topics.get(topic, ()))
