"""Small helpers shared by tests."""

from __future__ import annotations

import threading


def finishes_within(fn, timeout: float = 5.0) -> bool:
    """Run fn in a daemon thread; False if it is still running after `timeout` (a deadlock)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # re-raised in the test thread below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if errors:
        raise errors[0]
    return not thread.is_alive()
