"""Pure functions: durations, retry policies, JSON encoding."""

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest

import django_zart as zart
from django_zart import serialization
from django_zart.durations import to_seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (timedelta(minutes=2), 120),
        (3, 3),
        (0.5, 0.5),
        ("2s", 2),
        ("30m", 1800),
        ("1h", 3600),
        ("1d", 86400),
        ("250ms", 0.25),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert to_seconds(value) == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["2 weeks", "-1s", -3, True, None, "s"])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        to_seconds(value)  # type: ignore[arg-type]


def test_exponential_counts_retries_after_the_first_try() -> None:
    policy = zart.Retry.exponential(3, "2s")
    assert [policy.next_delay(n) for n in (1, 2, 3, 4)] == [2, 4, 8, None]


def test_fixed_and_none() -> None:
    assert [zart.Retry.fixed(2, "1s").next_delay(n) for n in (1, 2, 3)] == [1, 1, None]
    assert zart.Retry.none().next_delay(1) is None


def test_max_delay_and_jitter() -> None:
    policy = zart.Retry.exponential(10, 1, max_delay="5s", jitter=True)
    delays = [policy.next_delay(n) for n in range(1, 10)]
    assert all(d is not None and 0 < d <= 5 for d in delays)
    assert delays[-1] >= 2.5  # jitter keeps each wait in its upper half


def test_retry_rejects_negative_attempts() -> None:
    with pytest.raises(ValueError):
        zart.Retry.fixed(-1, 1)


def test_round_trip_of_documented_types() -> None:
    value = {
        "dt": datetime(2026, 1, 1, 12, 30, tzinfo=UTC),
        "d": date(2026, 1, 1),
        "t": time(12, 30, 1),
        "td": timedelta(days=1, seconds=5),
        "dec": Decimal("1.10"),
        "id": uuid4(),
        "tuple": (1, "a"),
        "set": {1, 2},
        "nested": [{"$zart": "user key"}],
        "plain": [1, 2.5, "x", None, True],
    }
    encoded = serialization.encode(value, "v")
    text = serialization.dumps(encoded, "v", 10_000)
    import json

    assert serialization.decode(json.loads(text)) == value


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (object(), "builtins.object"),
        ({1: "a"}, "key of type int"),
        (float("nan"), "nan"),
        ([b"x"], "bytes"),
    ],
)
def test_unserializable_values_name_what_and_why(value: object, needle: str) -> None:
    with pytest.raises(zart.SerializationError, match=needle) as info:
        serialization.encode(value, "the result of step 'x'")
    assert "step 'x'" in str(info.value)


def test_payload_limit() -> None:
    with pytest.raises(zart.PayloadTooLarge) as info:
        serialization.dumps("x" * 100, "the input", 50)
    assert info.value.size == 102 and info.value.limit == 50


def test_step_outside_a_workflow_is_the_plain_function() -> None:
    from tests.workflows import add

    assert add(2, 3) == 5


def test_context_outside_a_workflow() -> None:
    with pytest.raises(zart.NotInWorkflow, match="context"):
        zart.context()


@pytest.mark.usefixtures("isolated_registry")
def test_workflow_name_clash_is_refused_on_use() -> None:
    def other(data: object) -> None: ...

    zart.workflow("arith")(other)  # remembered for the system checks, not raised at import
    with pytest.raises(zart.ZartError, match="unique"):
        zart.start("arith", {"a": 1, "b": 2})


def test_new_execution_ids_are_time_ordered_uuids() -> None:
    import time as clock
    from uuid import UUID

    from django_zart.ids import new_execution_id

    first = new_execution_id()
    clock.sleep(0.002)
    later = [new_execution_id() for _ in range(1000)]
    assert all(UUID(i).version == 7 and UUID(i).variant == "specified in RFC 4122" for i in later)
    assert all(first < i for i in later)  # a later millisecond sorts after
    assert len(set(later)) == 1000
    millis = int(first.replace("-", "")[:12], 16)
    assert abs(millis / 1000 - clock.time()) < 5
