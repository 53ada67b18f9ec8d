"""EventBus: synchronous topic delivery, wildcard subscribers, isolation from bad handlers."""

from __future__ import annotations

import logging
import queue
import threading

from tests.helpers import finishes_within
from Webapp.event_bus import EventBus


def test_handler_receives_topic_and_payload_of_its_topic_only():
    bus = EventBus()
    received = []
    bus.subscribe("ticks", lambda topic, payload: received.append((topic, payload)))

    bus.publish("ticks", {"RELIANCE": 1364.0})
    bus.publish("orders", {"id": 1})

    assert received == [("ticks", {"RELIANCE": 1364.0})]


def test_publish_without_subscribers_does_nothing():
    EventBus().publish("nobody-listens", 42)


def test_wildcard_subscriber_receives_every_topic_after_topic_handlers():
    bus = EventBus()
    order = []
    bus.subscribe("*", lambda topic, payload: order.append(("*", topic, payload)))
    bus.subscribe("ticks", lambda topic, payload: order.append(("ticks", topic, payload)))

    bus.publish("ticks", 1)
    bus.publish("orders", 2)

    assert order == [("ticks", "ticks", 1), ("*", "ticks", 1), ("*", "orders", 2)]


def test_publishing_to_the_wildcard_topic_reaches_wildcard_handlers_once():
    bus = EventBus()
    received = []
    bus.subscribe("*", lambda topic, payload: received.append(payload))

    bus.publish("*", "hello")

    assert received == ["hello"]


def test_unsubscribe_stops_delivery_and_a_second_call_is_harmless():
    bus = EventBus()
    received = []
    unsubscribe = bus.subscribe("ticks", lambda topic, payload: received.append(payload))

    bus.publish("ticks", 1)
    unsubscribe()
    unsubscribe()
    bus.publish("ticks", 2)

    assert received == [1]
    assert bus.subscriber_count("ticks") == 0


def test_same_handler_subscribed_twice_is_called_twice_until_each_is_unsubscribed():
    bus = EventBus()
    received = []

    def handler(topic, payload):
        received.append(payload)

    first = bus.subscribe("ticks", handler)
    bus.subscribe("ticks", handler)
    bus.publish("ticks", "a")
    first()
    bus.publish("ticks", "b")

    assert received == ["a", "a", "b"]


def test_raising_handler_is_logged_and_neither_publisher_nor_other_handlers_notice(caplog):
    bus = EventBus()
    received = []

    def broken(topic, payload):
        raise RuntimeError("subscriber bug")

    bus.subscribe("ticks", broken)
    bus.subscribe("ticks", lambda topic, payload: received.append(payload))
    bus.subscribe("*", lambda topic, payload: received.append(("*", payload)))

    with caplog.at_level(logging.ERROR, logger="Webapp.event_bus"):
        bus.publish("ticks", 7)

    assert received == [7, ("*", 7)]
    [record] = caplog.records
    assert record.exc_info is not None and "subscriber bug" in str(record.exc_info[1])
    assert "ticks" in record.getMessage()


def test_handlers_run_synchronously_in_the_publishers_thread():
    bus = EventBus()
    threads = []
    bus.subscribe("ticks", lambda topic, payload: threads.append(threading.current_thread()))

    publisher_done = threading.Event()

    def publish_from_worker():
        bus.publish("ticks", None)
        publisher_done.set()

    worker = threading.Thread(target=publish_from_worker, name="publisher")
    worker.start()
    worker.join(5)

    assert publisher_done.is_set()
    assert [t.name for t in threads] == ["publisher"]


def test_handler_can_publish_subscribe_and_unsubscribe_without_deadlock():
    bus = EventBus()
    received = []
    unsubscribers = []

    def relay(topic, payload):
        unsubscribers.append(bus.subscribe("late", lambda t, p: received.append(p)))
        bus.publish("echo", payload)
        unsubscribers.pop()()

    bus.subscribe("ticks", relay)
    bus.subscribe("echo", lambda topic, payload: received.append(("echo", payload)))

    assert finishes_within(lambda: bus.publish("ticks", 5))
    assert received == [("echo", 5)]
    assert bus.subscriber_count("late") == 0


def test_subscribing_and_unsubscribing_while_other_threads_publish_loses_no_event():
    bus = EventBus()
    steady_counts = queue.Queue()
    publishers, events_each = 4, 2_000
    counts = [0] * publishers

    def steady(topic, payload):
        counts[payload] += 1

    bus.subscribe("ticks", steady)
    stop_churn = threading.Event()
    churn_errors: list[BaseException] = []

    def churn():
        try:
            while not stop_churn.is_set():
                unsubscribe = bus.subscribe("ticks", lambda topic, payload: None)
                unsubscribe_all = bus.subscribe("*", lambda topic, payload: None)
                unsubscribe()
                unsubscribe_all()
        except BaseException as exc:
            churn_errors.append(exc)

    def publish(index):
        for _ in range(events_each):
            bus.publish("ticks", index)
        steady_counts.put(index)

    churner = threading.Thread(target=churn, daemon=True)
    churner.start()
    workers = [threading.Thread(target=publish, args=(i,), daemon=True) for i in range(publishers)]
    for worker in workers:
        worker.start()
    finished = {steady_counts.get(timeout=10) for _ in workers}
    stop_churn.set()
    churner.join(5)

    assert finished == set(range(publishers))
    assert counts == [events_each] * publishers
    assert not churn_errors
    assert bus.subscriber_count() == 1
