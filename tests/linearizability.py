"""A linearizability checker: does a recorded history of concurrent operations have an order,
consistent with real time, in which a sequential model gives every recorded answer?

The search is Wing and Gong's, with Lowe's memoisation (a configuration already seen, the
same set of operations linearized and the same state, is not explored twice), and
P-compositionality as Porcupine uses it: each key is a separate object, checked alone.
An operation that ended without an answer (SynchroConnectionError: "effect unknown", a
timeout, a cancellation, a killed process) is *indeterminate*: it may have taken effect
once, at any moment after it was invoked, or not at all; never twice. Such an operation is
linearized with whatever answer the model gives, or left out.

On failure, :func:`minimal` shrinks the key's history to a minimal non-linearizable subset
(deleting one operation at a time while the rest stays non-linearizable), which is what a
report prints.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

#: The model's state of a key that holds nothing.
MISSING = "<missing>"


@dataclass(frozen=True)
class Op:
    """One operation as a client saw it. ``complete`` is math.inf, and ``known`` False,
    for one that got no answer."""

    client: str
    key: str
    name: str
    args: tuple[Any, ...]
    output: Any
    invoke: float
    complete: float
    known: bool = True

    def __str__(self) -> str:
        call = f"{self.name}({', '.join(json.dumps(arg) for arg in self.args)})"
        end = f"{self.complete:.6f}" if self.known else "?"
        answer = json.dumps(self.output) if self.known else "no answer (effect unknown)"
        return f"[{self.invoke:.6f} .. {end}] {self.client}: {call} -> {answer}"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def step(state: Any, name: str, args: tuple[Any, ...]) -> tuple[Any, Any]:
    """The sequential model of one key: (new state, answer) of operation ``name``."""
    if name == "get":
        return state, state
    if name == "set":
        return args[0], None
    if name == "delete":
        return MISSING, 0 if state is MISSING else 1
    if name == "setdefault":
        return (args[0], args[0]) if state is MISSING else (state, state)
    if name == "replace":
        return args[0], None if state is MISSING else state
    if name == "compare_and_set":
        expected, new = args
        if state is not MISSING and _canonical(state) == _canonical(expected):
            return new, True
        return state, False
    if name in ("increment", "decrement"):
        base = 0 if state is MISSING else state
        value = base + args[0] if name == "increment" else base - args[0]
        return value, value
    raise ValueError(f"no model for {name!r}")


class TooLong(Exception):
    """The search met more configurations than its budget allowed."""


def linearizable(ops: list[Op], initial: Any = MISSING, budget: int | None = None) -> bool:
    """Whether the history ``ops`` of one key is linearizable (TooLong past ``budget``
    configurations explored)."""
    ops = sorted(ops, key=lambda op: op.invoke)
    count = len(ops)
    required = 0
    for index, op in enumerate(ops):
        if op.known:
            required |= 1 << index
    seen: set[tuple[int, str]] = set()
    # depth-first, explicit stack of (done, state)
    stack: list[tuple[int, Any]] = [(0, initial)]
    while stack:
        done, state = stack.pop()
        if done & required == required:
            return True
        memo = (done, _canonical(state) if state is not MISSING else MISSING)
        if memo in seen:
            continue
        seen.add(memo)
        if budget is not None and len(seen) > budget:
            raise TooLong
        # an operation may come next if no pending operation completed before it began
        first_end = math.inf
        for index in range(count):
            if not done >> index & 1 and ops[index].complete < first_end:
                first_end = ops[index].complete
        for index in range(count):
            if done >> index & 1:
                continue
            op = ops[index]
            if op.invoke > first_end:
                break  # sorted by invoke: none further can come next either
            new_state, answer = step(state, op.name, op.args)
            if op.known and _canonical(answer) != _canonical(op.output):
                continue
            stack.append((done | 1 << index, new_state))
    return False


def _forgotten(op: Op) -> Op:
    return Op(op.client, op.key, op.name, op.args, None, op.invoke, math.inf, known=False)


def minimal(ops: list[Op], initial: Any = MISSING) -> list[Op]:
    """The answers that prove ``ops`` not linearizable, as few as it takes.

    First the earliest moment T at which what was known proves it: the operations invoked
    before T, those not answered by T taken as unanswered (a linearization of the whole
    history, cut at T, orders these: the operations answered by T come after only
    operations invoked before T). Then each of their answers forgotten (the operation kept,
    as if it had timed out) while the rest still cannot be ordered, latest first. What is
    left known is the witness; it is read with every operation invoked before T."""
    ordered = sorted(ops, key=lambda op: op.invoke)
    prefix = ordered
    for cut in sorted(op.complete for op in ordered if op.known):
        seen = [op if op.complete <= cut else _forgotten(op) for op in ordered if op.invoke <= cut]
        if not linearizable(seen, initial):
            prefix = seen
            break
    if sum(op.known for op in prefix) > _MOST_TO_SHRINK:
        return [op for op in prefix if op.known]
    for index in reversed(range(len(prefix))):
        if not prefix[index].known:
            continue
        trial = [*prefix[:index], _forgotten(prefix[index]), *prefix[index + 1 :]]
        try:
            if not linearizable(trial, initial, budget=_SHRINK_BUDGET):
                prefix = trial
        except TooLong:  # too costly to tell: the answer stays in the witness
            pass
    return [op for op in prefix if op.known]


#: Longest prefix whose answers minimal() tries to forget one by one (each try is a search
#: that may explore every order of the forgotten operations), and the configurations one
#: try may explore.
_MOST_TO_SHRINK = 40
_SHRINK_BUDGET = 20_000


@dataclass
class Anomaly:
    """A key whose history is not linearizable, and the minimal sub-history showing it."""

    key: str
    operations: int
    witness: list[Op]

    def __str__(self) -> str:
        head = (
            f"key {self.key!r}: {self.operations} operations, not linearizable; the answers "
            "that no order explains (with every operation invoked before the last of them):"
        )
        return "\n  ".join([head, *(str(op) for op in self.witness)])


def check(
    history: Iterable[Op], initial: Callable[[str], Any] = lambda key: MISSING
) -> list[Anomaly]:
    """Every key of ``history`` whose operations are not linearizable (none: all are)."""
    by_key: dict[str, list[Op]] = {}
    for op in history:
        by_key.setdefault(op.key, []).append(op)
    found = []
    for key, ops in sorted(by_key.items()):
        start = initial(key)
        if not linearizable(ops, start):
            found.append(Anomaly(key, len(ops), minimal(ops, start)))
    return found


# -- locks, semaphores and leaders: safety over holder intervals ----------------------------------


@dataclass(frozen=True)
class Hold:
    """One holding of lock or semaphore ``name``: from when the acquire returned to when the
    release was sent (``end`` math.inf when the holder never released: killed)."""

    client: str
    name: str
    start: float
    end: float
    token: int = 0

    def __str__(self) -> str:
        span = f"[{self.start:.6f} .. {self.end:.6f}]"
        return f"{self.client} held {self.name!r} {span} token {self.token}"


def overlaps(holds: Iterable[Hold], limit: int = 1, slack: float = 0.0) -> list[list[Hold]]:
    """Groups of more than ``limit`` holdings of one name at one moment. ``slack``: how
    much of each end is forgiven (the holders' clocks read by the recorder, not the
    store)."""
    found = []
    by_name: dict[str, list[Hold]] = {}
    for hold in holds:
        by_name.setdefault(hold.name, []).append(hold)
    for same in by_name.values():
        events = []
        for hold in same:
            if hold.end - hold.start > 2 * slack:
                events.append((hold.start + slack, 1, hold))
                events.append((hold.end - slack, -1, hold))
        events.sort(key=lambda event: (event[0], event[1]))
        current: list[Hold] = []
        for _, change, hold in events:
            if change > 0:
                current.append(hold)
                if len(current) > limit:
                    found.append(list(current))
            else:
                current.remove(hold)
    return found


def tokens_out_of_order(holds: Iterable[Hold]) -> list[tuple[Hold, Hold]]:
    """Pairs of holdings of one lock where the later acquisition has the smaller (or the
    same) fencing token."""
    found = []
    by_name: dict[str, list[Hold]] = {}
    for hold in holds:
        by_name.setdefault(hold.name, []).append(hold)
    for same in by_name.values():
        ordered = sorted(same, key=lambda hold: hold.start)
        for before, after in itertools.pairwise(ordered):
            if after.token <= before.token:
                found.append((before, after))
    return found
