"""Rate limits per queue: one bucket of tokens, shared by every worker."""

import itertools
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from django.core.checks import run_checks

import django_zart as zart
from django_zart.conf import Rate, get_settings, validate
from django_zart.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def rated(settings: Any, rate: str, **options: object) -> None:
    settings.ZART = {
        **settings.ZART,
        "QUEUES": {"default": {}, "emails": {"rate": rate, **options}},
    }


def start_times(ids: list[str]) -> list[datetime]:
    rows = Execution.objects.filter(pk__in=ids).order_by("started_at")
    return [t for t in rows.values_list("started_at", flat=True) if t is not None]


def test_queues_as_a_dict_give_names_and_rates(settings: Any) -> None:
    rated(settings, "120/m", burst=5)
    assert get_settings().queues == ("default", "emails")
    assert get_settings().queue_rates == {"emails": Rate(per_second=2.0, burst=5)}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": "100"}, "the rate must be"),
        ({"rate": "0/s"}, "the rate must be"),
        ({"rate": "5/w"}, "the rate must be"),
        ({"rate": 5}, "the rate must be"),
        ({"rate": "5/s", "burst": 0}, "burst must be"),
        ({"burst": 3}, "needs a"),
        ({"speed": "5/s"}, "must be a dict of options"),
    ],
)
def test_a_bad_rate_is_a_clear_settings_error(options: dict, message: str) -> None:
    problems = validate({"QUEUES": {"emails": options}})
    assert len(problems) == 1 and "QUEUES" in problems[0] and message in problems[0]


def test_starts_in_a_rated_queue_are_spaced_by_its_rate(
    settings: Any, drain: Callable[..., None]
) -> None:
    rated(settings, "20/s")  # one every 50 ms, no burst
    ids = zart.start_many("arith", [{"a": i, "b": 1} for i in range(8)], queue="emails")
    drain(*ids, timeout=30)
    times = start_times(ids)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert len(times) == 8 and min(gaps) >= 0.04, gaps


def test_a_burst_takes_several_at_once_then_the_rate_holds(
    settings: Any, drain: Callable[..., None]
) -> None:
    rated(settings, "10/s", burst=4)
    ids = zart.start_many("arith", [{"a": i, "b": 1} for i in range(8)], queue="emails")
    drain(*ids, timeout=30)
    times = start_times(ids)
    assert (times[-1] - times[0]).total_seconds() >= 0.35  # 4 at once, then 4 more at 10/s


def test_other_queues_are_not_held_back(settings: Any, drain: Callable[..., None]) -> None:
    rated(settings, "1/h")
    slow = zart.start_many("arith", [{"a": 1, "b": 1}] * 2, queue="emails")
    fast = zart.start_many("arith", [{"a": 1, "b": 1}] * 5)
    drain(*fast, timeout=10)
    statuses = list(Execution.objects.filter(pk__in=slow).values_list("status", flat=True))
    assert sorted(statuses) == ["COMPLETED", "PENDING"]  # one token, then an hour's wait


def test_a_concurrency_limit_in_a_rated_queue_is_a_check_error(
    settings: Any,
) -> None:
    rated(settings, "10/s")
    zart.workflow("rated-and-limited", queue="emails", concurrency=2)(lambda data: None)
    try:
        errors = [m for m in run_checks() if m.id == "django_zart.E006"]
        assert len(errors) == 1 and "rated-and-limited" in errors[0].msg
    finally:
        from django_zart import registry

        registry._workflows.pop("rated-and-limited", None)
