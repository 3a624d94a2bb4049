"""A durable sleep between two steps: kill the worker while it sleeps, and the
execution wakes up on the next worker, on time, without running the first step again."""

import time

import django_zart as zart

from .runner import Example, new_id


@zart.step("pack-parcel")
def pack_parcel(order: str) -> str:
    time.sleep(0.1)
    return "parcel for %s packed" % order


@zart.step("ship-parcel")
def ship_parcel(order: str) -> str:
    time.sleep(0.1)
    return "parcel for %s shipped" % order


@zart.workflow("pack-sleep-ship")
def pack_sleep_ship(data: dict) -> dict:
    packed = pack_parcel(data["order"])
    # The wake-up time is a row in the database, not a thread: no worker holds the
    # execution while it sleeps, and any worker wakes it when the time comes.
    zart.sleep("wait-for-courier", data["seconds"])
    shipped = ship_parcel(data["order"])
    return {"packed": packed, "shipped": shipped}


def run(example: Example) -> None:
    seconds = example.duration(20, 0.3)
    execution_id = zart.start(
        "pack-sleep-ship", {"order": "order-17", "seconds": seconds}, execution_id=new_id("ship")
    )
    example.say("Started %s; it sleeps %g s between its two steps." % (execution_id, seconds))
    if example.worker is not None:
        example.say(
            "While it sleeps, kill the worker from another terminal: kill -9 %d\n"
            "Another worker is then started, and the execution wakes up on it, on time."
            % example.worker.pid
        )
    else:
        example.say(
            "While it sleeps, stop your worker (Ctrl-C, or kill -9 <its pid>) and start it"
            " again: the execution wakes up on the new one."
        )
    example.follow(execution_id)
