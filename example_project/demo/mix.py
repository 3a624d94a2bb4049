"""What the demo starts: a few dozen executions of the examples' workflows, and the events
it sends them while they run.

The inputs are chosen so that every kind of thing happens at least once in half a minute:
retries, a business error with its failure handler, durable sleeps, events that come and
events that do not, parallel branches, a loop of checkpoints and child workflows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import django_zart as zart
from example_project.examples import catalog

PEOPLE = ["ada", "alan", "grace", "edsger", "barbara", "donald", "frances", "ken"]
CITIES = ["Lyon", "Lisbon", "Oslo", "Porto", "Ushuaia", "Turin"]


@dataclass(frozen=True)
class Kind:
    """One workflow of the mix: its executions' inputs, and the children each one starts."""

    workflow: str
    prefix: str
    inputs: list[Any]
    children: tuple[str, ...] = ()
    what: str = ""


@dataclass(frozen=True)
class Decision:
    """The event ``decision`` the demo sends, ``after`` seconds from the start, to the
    ``index``-th expense request, as its manager would."""

    after: float
    index: int
    payload: dict[str, Any]


@dataclass
class Mix:
    kinds: list[Kind]
    decisions: list[Decision] = field(default_factory=list)
    ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def expected(self) -> dict[str, int]:
        """How many executions of each workflow the mix makes, its children included."""
        counts: dict[str, int] = {}
        for kind in self.kinds:
            counts[kind.workflow] = counts.get(kind.workflow, 0) + len(kind.inputs)
            for child in kind.children:
                counts[child] = counts.get(child, 0) + len(kind.inputs)
        return counts

    @property
    def started(self) -> list[str]:
        return [execution_id for ids in self.ids.values() for execution_id in ids]

    def start(self, batch: str) -> None:
        """Start every execution, one transaction per workflow; ids end with ``batch``."""
        for kind in self.kinds:
            ids = ["%s-%s-%d" % (kind.prefix, batch, n + 1) for n in range(len(kind.inputs))]
            self.ids[kind.workflow] = zart.start_many(
                kind.workflow, kind.inputs, execution_ids=ids, by="demo"
            )


def build(*, fast: bool) -> Mix:
    """The mix; ``fast`` shrinks its sleeps and deadlines to fractions of a second."""
    catalog.load_all()

    def seconds(normal: float, quick: float) -> float:
        return quick if fast else normal

    orders = [
        {"item": item, "quantity": quantity, "coupon": "SPRING", "city": city}
        for item, quantity, city in [
            ("teapot", 2, "Porto"),
            ("kettle", 1, "Turin"),
            ("mug", 6, "Lyon"),
        ]
    ]
    orders.append({"item": "tray", "quantity": 1, "coupon": "", "city": "Ushuaia", "remote": True})
    expenses = [
        {"amount": amount, "reason": reason, "answer_within": seconds(within, within / 10)}
        for amount, reason, within in [
            (120, "a train ticket", 60),
            (80, "a team lunch", 60),
            (640, "a conference pass", 60),
            (4000, "a sofa", 60),
            (35, "a taxi", 8),
            (2300, "a laptop", 8),
        ]
    ]
    kinds = [
        Kind(
            "onboarding",
            "signup",
            [{"email": "%s@example.com" % name} for name in PEOPLE[:6]],
            what="the README's example: an email, then a billing customer",
        ),
        Kind(
            "shop-order",
            "order",
            orders,
            what="a card that fails once, an expired coupon, no courier to Ushuaia",
        ),
        Kind(
            "health-report",
            "health",
            [["database", "cache", "payments"]] * 4,
            what="three checks as parallel branches",
        ),
        Kind(
            "expense-request",
            "expense",
            expenses,
            what="waits for a manager's decision; two never get one",
        ),
        Kind(
            "pack-sleep-ship",
            "ship",
            [
                {"order": "order-%d" % (100 + n), "seconds": seconds(3 + n, 0.2 + n / 10)}
                for n in range(5)
            ],
            what="a durable sleep between two steps",
        ),
        Kind(
            "monthly-reports-batch",
            "reports",
            [
                {
                    "reports": [
                        {"customer": customer, "month": month, "seconds": seconds(0.5, 0.02)}
                        for customer in catalog.load("loops").CUSTOMERS
                    ]
                }
                for month in ("2026-09", "2026-10", "2026-11")
            ],
            what="eight reports, one checkpoint each",
        ),
        Kind(
            "book-trip",
            "trip",
            [
                {"traveller": "%s@example.com" % name, "to": city, "nights": nights}
                for name, city, nights in zip(PEOPLE[5:], CITIES, (2, 3, 5), strict=False)
            ],
            children=("book-flight", "book-hotel", "send-itinerary"),
            what="a parent and its three child workflows",
        ),
    ]
    mix = Mix(kinds)
    answers = [(True, "dana"), (False, "sam"), (True, "sam"), (True, "dana")]
    mix.decisions = [
        Decision(seconds(2 + 1.5 * n, 0.1 + n / 20), n, {"approved": ok, "by": who})
        for n, (ok, who) in enumerate(answers)
    ]
    return mix
