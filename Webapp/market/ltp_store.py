"""Thread-safe store of the latest traded price per trading symbol."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime

from Webapp.event_bus import Subscribers

_log = logging.getLogger(__name__)

_INF = math.inf


@dataclass(frozen=True, slots=True)
class Quote:
    """The last trade seen for one symbol. Times are tz-aware UTC."""

    symbol: str
    ltp: float
    volume: int
    exchange_time: datetime | None
    received_at: datetime


QuoteCallback = Callable[[Quote], None]

# LTPStore.update builds each Quote through its slot descriptors: the same frozen
# Quote as Quote(...), in about half the time of the dataclass __init__, which
# matters on the feed thread (bench/tick_pipeline.py). Adding a field to Quote
# means adding it there too; this check makes forgetting it fail at import.
_QUOTE_FIELDS = ("symbol", "ltp", "volume", "exchange_time", "received_at")
if tuple(field.name for field in fields(Quote)) != _QUOTE_FIELDS:
    raise RuntimeError("Quote's fields changed: update LTPStore.update's fast construction")
_new_quote = object.__new__
_set_symbol, _set_ltp, _set_volume, _set_exchange_time, _set_received_at = (
    Quote.__dict__[name].__set__ for name in _QUOTE_FIELDS
)


class LTPStore:
    """Latest price per symbol, written by feed threads and read by everyone else.

    Every `update` bumps `version`; readers that poll (the Socket.IO bridge, the
    engine's ticks-ready handler) call `changes_since(last_seen_version)` to get
    only what moved. Subscribers are called after each update in the updater's
    thread with no lock held, so they may read or write the store; they must be
    quick, because they run on the feed thread.
    """

    __slots__ = ("_lock", "_quotes", "_updated_at_version", "_version", "_subscribers")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._quotes: dict[str, Quote] = {}
        # The store version at which each symbol last changed; what changes_since filters on.
        self._updated_at_version: dict[str, int] = {}
        self._version = 0
        # Copy-on-write so the hot path iterates it without a lock.
        self._subscribers: Subscribers[QuoteCallback] = Subscribers()

    def update(
        self,
        symbol: str,
        ltp: float,
        volume: int = 0,
        exchange_time: datetime | None = None,
        received_at: datetime | None = None,
    ) -> Quote:
        """Record a trade for `symbol` and return the stored Quote.

        Raises ValueError for a non-positive or non-finite `ltp`.
        """
        # Chained comparison also rejects NaN, which compares false to everything.
        if not 0.0 < ltp < _INF:
            raise ValueError(f"ltp for {symbol!r} must be positive and finite, got {ltp!r}")
        quote = _new_quote(Quote)
        _set_symbol(quote, symbol)
        _set_ltp(quote, ltp)
        _set_volume(quote, volume)
        _set_exchange_time(quote, exchange_time)
        _set_received_at(quote, datetime.now(UTC) if received_at is None else received_at)
        with self._lock:
            version = self._version = self._version + 1
            self._quotes[symbol] = quote
            self._updated_at_version[symbol] = version
        for callback in self._subscribers.current:
            try:
                callback(quote)
            except Exception:
                _log.exception("LTP subscriber %r failed on %s", callback, symbol)
        return quote

    def get(self, symbol: str) -> Quote | None:
        """The latest Quote for `symbol`, or None if it has never traded here."""
        with self._lock:
            return self._quotes.get(symbol)

    def ltp(self, symbol: str) -> float | None:
        """The last traded price of `symbol`, None before its first tick (a PriceSource)."""
        with self._lock:
            quote = self._quotes.get(symbol)
        return None if quote is None else quote.ltp

    def snapshot(self) -> dict[str, Quote]:
        """A copy of every symbol's latest Quote, taken at one instant."""
        with self._lock:
            return dict(self._quotes)

    @property
    def version(self) -> int:
        """A counter that grows by one on every update."""
        return self._version

    def changes_since(self, version: int) -> tuple[int, dict[str, Quote]]:
        """(current version, latest Quote of each symbol updated after `version`).

        Pass the returned version back next time to see each update exactly once;
        a symbol updated several times in between appears once, with its latest Quote.
        """
        with self._lock:
            current = self._version
            if version >= current:
                return current, {}
            quotes = self._quotes
            return current, {
                symbol: quotes[symbol]
                for symbol, updated_at in self._updated_at_version.items()
                if updated_at > version
            }

    def subscribe(self, callback: QuoteCallback) -> Callable[[], None]:
        """Call `callback(quote)` after every update; returns a function that unsubscribes.

        The callback runs in the updater's thread with no store lock held. An
        exception it raises is logged and never reaches the feed.
        """
        return self._subscribers.add(callback)

    def __len__(self) -> int:
        with self._lock:
            return len(self._quotes)
