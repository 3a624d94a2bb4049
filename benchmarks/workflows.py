"""The benchmarked workflow: three trivial checkpointed steps, so the cost is the engine's."""

import django_zart as zart


@zart.step("add-one")
def add_one(i: int) -> int:
    return i + 1


@zart.workflow("bench-three-steps")
def three_steps(data: dict) -> int:
    return add_one(add_one(add_one(data["i"])))
