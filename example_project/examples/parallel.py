"""Three health checks fanned out as parallel branches (zart.map), any worker may run
each; the workflow sleeps meanwhile and aggregates them when the last one is done."""

import time

import django_zart as zart

from .runner import Example, new_id

# How long each service takes to answer, and whether it is healthy.
SERVICES = {"database": (0.3, True), "cache": (0.1, True), "payments": (0.2, False)}


@zart.step("check-health")
def check_health(service: str) -> dict:
    latency, healthy = SERVICES[service]
    time.sleep(latency)
    return {"service": service, "healthy": healthy, "ms": int(latency * 1000)}


@zart.step("summarize")
def summarize(checks: list[dict]) -> str:
    down = [c["service"] for c in checks if not c["healthy"]]
    return "all healthy" if not down else "down: %s" % ", ".join(down)


@zart.workflow("health-report")
def health_report(services: list[str]) -> dict:
    checks = zart.map(check_health, services)  # one branch per service, run side by side
    return {"checks": checks, "summary": summarize(checks)}


def run(example: Example) -> None:
    execution_id = zart.start("health-report", list(SERVICES), execution_id=new_id("health"))
    started = time.monotonic()
    example.follow(execution_id)
    example.say(
        "The checks take 0.3 + 0.1 + 0.2 s one after the other; side by side, the whole"
        " workflow took %.1f s." % (time.monotonic() - started)
    )
