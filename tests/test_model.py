"""Model-based: random operation sequences on every interface agree with a plain dict.

A hypothesis RuleBasedStateMachine applies the same operations to an interface (through
its blocking front end) and to a dict model, and checks every answer and error against the
model. Keys come from a small alphabet so that operations collide on the same keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test
from sanic import Sanic

from sanic_synchro_ctx import Synchro, SynchroTypeError, SynchroValueError
from sanic_synchro_ctx.checks import INT64_MAX, INT64_MIN
from sanic_synchro_ctx.interfaces.base import BaseSynchroInterface

from .registry import INTERFACES

pytestmark = pytest.mark.timeout(600)

KEYS = st.sampled_from(["a", "b", "c d", "ü", "#x", "k" * 300])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(INT64_MIN, INT64_MAX)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=8,
)
STEPS = st.integers(-(2**40), 2**40) | st.sampled_from([INT64_MAX, INT64_MIN + 1, 0])


def stored(value: Any) -> Any:
    """What the store gives back for ``value`` (tuples -> lists, -0.0 stays -0.0)."""
    return json.loads(json.dumps(value))


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def is_counter(value: Any) -> bool:
    return type(value) is int


class Agreement(RuleBasedStateMachine):
    #: The blocking front end under test, in a plain holder: hypothesis probes class
    #: attributes, and a context answers any attribute name (with a read of that key).
    under_test: tuple[Any, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.ctx = self.under_test[0]
        self.ctx.clear()
        self.model: dict[str, Any] = {}

    @rule(key=KEYS, value=VALUES)
    def set(self, key: str, value: Any) -> None:
        self.ctx.set(key, value)
        self.model[key] = stored(value)

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        assert self.ctx.get(key, "<missing>") == self.model.get(key, "<missing>")

    @rule(keys=st.lists(KEYS, max_size=4))
    def delete(self, keys: list[str]) -> None:
        expected = sum(1 for key in set(keys) if key in self.model)
        assert self.ctx.delete(*keys) == expected
        for key in keys:
            self.model.pop(key, None)

    @rule(key=KEYS, by=STEPS)
    def increment(self, key: str, by: int) -> None:
        current = self.model.get(key, 0)
        if not is_counter(current):
            with pytest.raises(SynchroTypeError):
                self.ctx.increment(key, by)
        elif not INT64_MIN <= current + by <= INT64_MAX:
            with pytest.raises(SynchroValueError):
                self.ctx.increment(key, by)
        else:
            assert self.ctx.increment(key, by) == current + by
            self.model[key] = current + by

    @rule(mapping=st.dictionaries(KEYS, VALUES, max_size=3))
    def set_default(self, mapping: dict[str, Any]) -> None:
        for key, value in mapping.items():
            self.model.setdefault(key, stored(value))
        assert self.ctx.set_default(mapping) == {key: self.model[key] for key in mapping}

    @rule(key=KEYS, value=VALUES)
    def replace(self, key: str, value: Any) -> None:
        assert self.ctx.replace(key, value) == self.model.get(key)
        self.model[key] = stored(value)

    @rule(key=KEYS, expected=VALUES, new=VALUES, use_current=st.booleans())
    def compare_and_set(self, key: str, expected: Any, new: Any, use_current: bool) -> None:
        if use_current and key in self.model:
            expected = self.model[key]
        matches = key in self.model and canonical(self.model[key]) == canonical(expected)
        assert self.ctx.compare_and_set(key, expected, new) is matches
        if matches:
            self.model[key] = stored(new)

    @rule(mapping=st.dictionaries(KEYS, VALUES, max_size=3))
    def update(self, mapping: dict[str, Any]) -> None:
        self.ctx.update(mapping)
        self.model.update({key: stored(value) for key, value in mapping.items()})

    @rule()
    def clear(self) -> None:
        self.ctx.clear()
        self.model.clear()

    def teardown(self) -> None:
        everything = ["a", "b", "c d", "ü", "#x", "k" * 300]
        assert self.ctx.get_many(everything) == self.model


@pytest.mark.parametrize("kind", INTERFACES)
def test_interface_agrees_with_a_dict_model(
    kind: str, make_interface: Callable[..., BaseSynchroInterface], app_name: str
) -> None:
    interface = make_interface(kind)
    app = Sanic(app_name)
    Synchro(app, interface=interface)
    machine = type(
        f"Agreement_{kind.replace('-', '_')}", (Agreement,), {"under_test": (app.ctx.synchro.sync,)}
    )
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=25,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            ),
        )
    finally:
        interface.close()
