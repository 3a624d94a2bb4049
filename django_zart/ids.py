"""The ids of executions started without one: time-ordered UUIDs (RFC 9562, version 7).

A random UUID lands anywhere in the indexes that hold execution ids (the executions'
primary key, the steps' and runs' foreign keys), so once a history of finished
executions outgrows the server's buffers every start and checkpoint reads a cold index
page. Ids that begin with their creation time are inserted at the indexes' right edge,
where the pages are warm, whatever the size of the history. The 74 random bits keep them
unguessable and unique across processes and machines.
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION = 0x7 << 76
_VARIANT = 0x2 << 62
_RANDOM = (1 << 80) - 1
_KEEP = ~((0xF << 76) | (0x3 << 62))


def new_execution_id() -> str:
    """A new execution id: 48 bits of Unix time in milliseconds, then random bits."""
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big") & _RANDOM
    return str(uuid.UUID(int=value & _KEEP | _VERSION | _VARIANT))
