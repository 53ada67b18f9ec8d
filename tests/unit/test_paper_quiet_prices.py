"""PaperBroker cost per price: a price that reaches no order and fires no GTT touches no table."""

from __future__ import annotations

from sqlalchemy import event

from tests.unit.paper_support import SYMBOL, bought, make_broker, memory_sessions, single_gtt
from Webapp.broker.base import GttState


def counted(sessions):
    """The number of SQL statements run on `sessions`' engine so far, as a callable."""
    statements = []
    engine = sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    return lambda: len(statements)


def test_prices_between_a_gtts_triggers_run_no_query():
    sessions = memory_sessions()
    broker = make_broker(sessions)
    bought(broker, 10, 1000.0)
    gtt_id = broker.place_gtt(single_gtt(975.0, 970.0, 1000.0, 10))
    broker.on_price(SYMBOL, 1001.0)  # learns what this symbol has at the broker
    queries = counted(sessions)
    for ltp in (1002.0, 990.0, 976.0, 1010.0):
        broker.on_price(SYMBOL, ltp)
    assert queries() == 0
    broker.on_price(SYMBOL, 975.0)  # reaches the trigger: the GTT fires as before
    assert broker.get_gtt(gtt_id).state is GttState.TRIGGERED


def test_a_gtt_call_on_another_symbol_keeps_this_symbols_prices_free():
    sessions = memory_sessions()
    broker = make_broker(sessions)
    bought(broker, 10, 1000.0)
    bought(broker, 5, 500.0, symbol="TCS")
    broker.place_gtt(single_gtt(975.0, 970.0, 1000.0, 10))
    broker.on_price(SYMBOL, 1001.0)
    broker.on_price("TCS", 500.0)
    broker.place_gtt(single_gtt(480.0, 478.0, 500.0, 5, symbol="TCS"))
    queries = counted(sessions)
    broker.on_price(SYMBOL, 1002.0)
    assert queries() == 0


def test_a_modified_trigger_is_the_one_a_later_price_is_checked_against():
    broker = make_broker()
    bought(broker, 10, 1000.0)
    gtt_id = broker.place_gtt(single_gtt(975.0, 970.0, 1000.0, 10))
    broker.on_price(SYMBOL, 1040.0)
    broker.modify_gtt(gtt_id, single_gtt(1014.0, 1009.0, 1040.0, 10))
    broker.on_price(SYMBOL, 1020.0)
    assert broker.get_gtt(gtt_id).state is GttState.ACTIVE
    broker.on_price(SYMBOL, 1014.0)
    assert broker.get_gtt(gtt_id).state is GttState.TRIGGERED
