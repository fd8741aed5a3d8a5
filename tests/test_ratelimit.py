"""GCRA itself (the step every interface runs atomically) and the rate syntax."""

from __future__ import annotations

import itertools

import pytest

from sanic_synchro_ctx import SynchroValueError
from sanic_synchro_ctx.ratelimit import gcra, parse_rate

NOWS = [0.0, 8_644.654, 1_796_026_920.3355052, 2.0**31 + 0.1]
RATES = [(1, 86_400.0), (3, 60.0), (100, 10.0), (7, 0.3), (1_000_000, 1.0), (13, 86_400.0)]


@pytest.mark.parametrize(("now", "rate"), list(itertools.product(NOWS, RATES)))
def test_a_fresh_key_admits_exactly_limit_requests_at_once(
    now: float, rate: tuple[int, float]
) -> None:
    """Float clocks round (now + 86400 - 86400 > now): a full budget must still be whole."""
    limit, per = rate
    tat = None
    answers = []
    for _ in range(min(limit, 200) + 1 if limit <= 200 else 3):
        new_tat, answer = gcra(tat, now, limit, per, 1)
        answers.append(answer)
        tat = new_tat if new_tat is not None else tat
    if limit <= 200:
        assert [a.allowed for a in answers] == [True] * limit + [False]
        assert [a.remaining for a in answers] == [*range(limit - 1, -1, -1), 0]
        assert 0 < answers[-1].retry_after <= per / limit * (1 + 1e-3)
    else:
        assert [a.remaining for a in answers] == [limit - 1, limit - 2, limit - 3]


def test_the_budget_refills_one_interval_at_a_time() -> None:
    tat, first = gcra(None, 1_000.0, 2, 1.0, 2)
    assert (first.allowed, first.remaining) == (True, 0)
    refused_tat, refused = gcra(tat, 1_000.25, 2, 1.0, 1)
    assert refused_tat is None
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.25)
    assert refused.reset_after == pytest.approx(0.75)
    _, admitted = gcra(tat, 1_000.5, 2, 1.0, 1)
    assert (admitted.allowed, admitted.remaining) == (True, 0)


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        ("100/second", (100, 1.0)),
        ("5/minute", (5, 60.0)),
        ("5 / minutes", (5, 60.0)),
        ("1/hour", (1, 3_600.0)),
        ("2/day", (2, 86_400.0)),
        ((10, 2.5), (10, 2.5)),
    ],
)
def test_rates_parse(rate: object, expected: tuple[int, float]) -> None:
    assert parse_rate(rate) == expected


@pytest.mark.parametrize(
    "rate", ["99999999999999999999999/second", "1000001/second", (2**63, 86_400), (61, 0.00006)]
)
def test_rates_faster_than_a_million_per_second_are_refused(rate: object) -> None:
    with pytest.raises(SynchroValueError, match="per second"):
        parse_rate(rate)


def test_the_fastest_rate_allowed_still_limits() -> None:
    """A million per second moves the TAT on today's clock: the limit holds."""
    now = 1.8e9
    tat, first = gcra(None, now, 1_000_000, 1.0, 1_000_000)
    assert first.allowed
    assert tat is not None
    assert tat > now
    _, second = gcra(tat, now, 1_000_000, 1.0, 1)
    assert not second.allowed
