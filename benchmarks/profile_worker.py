"""``runzartworker`` with every thread under cProfile, timed by each thread's own CPU clock.

``python -m cProfile`` only sees the main thread, and the worker runs workflows on its
other threads; a wall-clock profile would also charge GIL and socket waits to whatever
was running. This wraps every thread in its own ``cProfile.Profile(time.thread_time)``
and merges them into one ``.pstats`` file when the worker exits (after SIGTERM).

Usage (what ``throughput.py --profile`` runs)::

    python benchmarks/profile_worker.py OUT.pstats [runzartworker options...]
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
import time
from typing import Any


def main() -> None:
    out, options = sys.argv[1], sys.argv[2:]
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    original_run = threading.Thread.run

    def profiled_run(self: threading.Thread, *args: Any, **kwargs: Any) -> None:
        profile = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append(profile)
        profile.enable()
        try:
            original_run(self, *args, **kwargs)
        finally:
            profile.disable()

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    import django
    from django.core.management import execute_from_command_line

    django.setup()
    main_profile = cProfile.Profile(time.thread_time)
    main_profile.enable()
    try:
        execute_from_command_line(["manage.py", "runzartworker", *options])
    finally:
        main_profile.disable()
        for thread in threading.enumerate():
            if thread is not threading.current_thread():
                thread.join(2)
        stats = pstats.Stats(main_profile)
        with lock:
            for profile in profiles:
                stats.add(profile)
        stats.dump_stats(out)


if __name__ == "__main__":
    main()
