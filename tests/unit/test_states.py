"""Leg, order and GTT states: only the transitions the write-ahead design allows."""

import pytest

from Webapp.states import (
    GTT_TRANSITIONS,
    LADDER_TRANSITIONS,
    LEG_TRANSITIONS,
    ORDER_TRANSITIONS,
    GttIntentState,
    IllegalTransition,
    LegState,
    OrderIntentState,
    check_transition,
)


def test_a_leg_goes_pending_entry_protecting_open_pending_exit_closed():
    state = LegState.PENDING_ENTRY
    for new in (LegState.PROTECTING, LegState.OPEN, LegState.PENDING_EXIT, LegState.CLOSED):
        state = check_transition(LEG_TRANSITIONS, state, new)
    assert state is LegState.CLOSED


@pytest.mark.parametrize(
    ("table", "current", "new"),
    [
        (LEG_TRANSITIONS, LegState.CLOSED, LegState.OPEN),
        (LEG_TRANSITIONS, LegState.PENDING_ENTRY, LegState.OPEN),  # never open unprotected
        (ORDER_TRANSITIONS, OrderIntentState.FILLED, OrderIntentState.CANCELLED),
        (GTT_TRANSITIONS, GttIntentState.TRIGGERED, GttIntentState.ACTIVE),
        (GTT_TRANSITIONS, GttIntentState.DELETED, GttIntentState.ACTIVE),
    ],
)
def test_a_transition_the_rules_do_not_allow_is_refused(table, current, new):
    with pytest.raises(IllegalTransition, match=f"{current.value} → {new.value}"):
        check_transition(table, current, new)


@pytest.mark.parametrize(
    "table", [LEG_TRANSITIONS, LADDER_TRANSITIONS, ORDER_TRANSITIONS, GTT_TRANSITIONS]
)
def test_every_state_has_a_row_and_final_states_lead_nowhere(table):
    states = set(type(next(iter(table))))
    assert set(table) == states
    assert all(targets <= states for targets in table.values())
