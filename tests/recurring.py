"""A schedule declared in code; imported only where a test asks for it (it ticks every
second in every worker that imports it)."""

import django_zart as zart

from .workflows import mark


@zart.workflow(
    "tick", every="1s", schedule_options={"execution_id": "tick-{occurrence}", "overlap": "ALLOW"}
)
def tick(data: None) -> int:
    mark("tick")
    return 1
