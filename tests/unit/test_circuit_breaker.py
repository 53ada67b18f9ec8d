"""The circuit breaker: opens after N outages in a row, probes after a cool-down, then closes."""

from __future__ import annotations

import pytest

from Webapp.broker.base import CircuitOpen
from Webapp.broker.circuit_breaker import CircuitBreaker, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def changes():
    return []


@pytest.fixture
def breaker(clock, changes):
    return CircuitBreaker(
        failure_threshold=3,
        cooldown_s=10.0,
        clock=clock,
        on_change=lambda old, new: changes.append((old.value, new.value)),
    )


def fail(breaker, times):
    for _ in range(times):
        breaker.before_call()
        breaker.record_failure()


def test_stays_closed_below_the_threshold(breaker):
    fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED
    breaker.before_call()  # still lets calls through


def test_opens_after_n_consecutive_failures_and_refuses_calls_unsent(breaker, changes):
    fail(breaker, 3)
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitOpen, match="3 consecutive failures"):
        breaker.before_call()
    assert changes == [("closed", "open")]


def test_a_success_resets_the_count(breaker):
    fail(breaker, 2)
    breaker.record_success()
    fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED


def test_half_opens_after_the_cool_down_and_closes_after_a_successful_probe(
    breaker, clock, changes
):
    fail(breaker, 3)
    clock.now += 9.9
    assert breaker.state is CircuitState.OPEN
    clock.now += 0.1
    assert breaker.state is CircuitState.HALF_OPEN
    breaker.before_call()  # the probe
    with pytest.raises(CircuitOpen, match="probe"):
        breaker.before_call()  # only one probe at a time
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failed_probe_opens_it_again_for_a_full_cool_down(breaker, clock):
    fail(breaker, 3)
    clock.now += 10
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    clock.now += 9
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    clock.now += 1
    assert breaker.state is CircuitState.HALF_OPEN


def test_a_neutral_probe_frees_the_probe_slot_without_closing(breaker, clock):
    fail(breaker, 3)
    clock.now += 10
    breaker.before_call()
    breaker.record_neutral()
    assert breaker.state is CircuitState.HALF_OPEN
    breaker.before_call()  # another probe may go


@pytest.mark.parametrize("kwargs", [{"failure_threshold": 0}, {"cooldown_s": 0}])
def test_rejects_meaningless_settings(kwargs):
    with pytest.raises(ValueError):
        CircuitBreaker(**kwargs)
