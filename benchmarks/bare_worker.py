"""The floor: the same design's SQL from a plain psycopg loop, with no engine around it.

One connection in autocommit, one workflow at a time. Per workflow: one claim statement
(``UPDATE ... FOR UPDATE SKIP LOCKED`` that also marks the execution running), one fenced
single-row step ``INSERT`` per step (three, or the input's ``n``), each its own commit,
and one finish statement that deletes the task and completes the run and the execution.
``ENQUEUE``/``ENQUEUE_MANY`` start executions with the rows ``zart.start`` writes (one
statement, one transaction, one NOTIFY). The statements have the same
shape as django-zart's PostgreSQL store, on the same tables, so the difference between
the two is what the engine, Django and the worker add around them.

Runs until a claim finds nothing, then prints one line of JSON (processed count, CPU
seconds of the loop, statements sent) on stdout. ``throughput.py`` starts it. With
``--idle`` (``suite.py``) it LISTENs on zart's channel instead of exiting, waits up to
50 ms for a NOTIFY when a claim finds nothing, and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import psycopg

CLAIM = """
WITH picked AS (
    SELECT id FROM zart_tasks
     WHERE queue = 'default' AND run_after <= now()
       AND (held_by IS NULL OR lease_until < now())
     ORDER BY priority, run_after
     LIMIT 1
       FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE zart_tasks AS t
       SET held_by = %s, lease_until = now() + interval '30 seconds', claimed_at = now()
      FROM picked
     WHERE t.id = picked.id
 RETURNING t.id, t.execution_id
), started AS (
    UPDATE zart_executions AS e
       SET status = 'RUNNING', started_at = COALESCE(e.started_at, now()), updated_at = now()
      FROM claimed c
     WHERE e.id = c.execution_id
 RETURNING e.id, e.input, e.run_index
)
SELECT c.id, s.id, s.input, r.id, s.run_index
  FROM claimed c
  JOIN started s ON s.id = c.execution_id
  JOIN zart_execution_runs r ON r.execution_id = s.id AND r.index = s.run_index
"""

INSERT_STEP = """
INSERT INTO zart_steps (run_id, execution_id, run_index, sequence, position, name, kind,
                        status, result, error, attempts, wake_at, created_at, updated_at)
SELECT %s, %s, %s, %s, %s, 'add-one', 'STEP', 'COMPLETED', %s::jsonb, NULL, 1, NULL,
       now(), now()
 WHERE EXISTS (SELECT 1 FROM zart_tasks WHERE id = %s AND held_by = %s FOR SHARE)
ON CONFLICT (run_id, position) DO UPDATE SET status = excluded.status,
       result = excluded.result, updated_at = excluded.updated_at
RETURNING id
"""

FINISH = """
WITH t AS (
    DELETE FROM zart_tasks WHERE id = %s AND held_by = %s RETURNING execution_id
), r AS (
    UPDATE zart_execution_runs SET status = 'COMPLETED', finished_at = now()
     WHERE id = %s AND EXISTS (SELECT 1 FROM t)
)
UPDATE zart_executions AS e
   SET status = 'COMPLETED', output = %s::jsonb, finished_at = now(), updated_at = now()
  FROM t WHERE e.id = t.execution_id
"""

ENQUEUE = """
WITH e AS (
    INSERT INTO zart_executions (id, workflow, queue, status, input, run_index, replay_base,
                                 wake_parent, created_at, updated_at)
    SELECT id, %(workflow)s, 'default', 'PENDING', input, 1, 1, false, now(), now()
      FROM unnest(%(ids)s::text[], %(inputs)s::jsonb[]) AS u(id, input)
    RETURNING id
), r AS (
    INSERT INTO zart_execution_runs (index, reason, status, execution_id, created_at,
                                     triggered_by)
    SELECT 1, 'INITIAL', 'RUNNING', id, now(), '' FROM e
), t AS (
    INSERT INTO zart_tasks (kind, queue, priority, run_after, wake_pending, recoveries,
                            created_at, execution_id)
    SELECT 'BODY', 'default', 0, now(), false, 0, now(), id FROM e
)
SELECT pg_notify('zart_due', 'default')
"""


def enqueue(
    conn: psycopg.Connection, inputs: list[dict[str, int]], workflow: str = "bench-chain"
) -> list[str]:
    """Start one execution per input in one statement (one transaction); return the ids."""
    ids = [str(uuid.uuid4()) for _ in inputs]
    params = {"ids": ids, "inputs": [json.dumps(i) for i in inputs], "workflow": workflow}
    conn.execute(ENQUEUE, params)
    return ids


def position(sequence: int) -> str:
    return "add-one" if sequence == 1 else "add-one#%d" % sequence


def run_one(conn: psycopg.Connection) -> int:
    """Claim, run and finish one workflow; return the number of statements (0: no work)."""
    token = uuid.uuid4()
    row = conn.execute(CLAIM, [token]).fetchone()
    if row is None:
        return 0
    task_id, execution_id, data, run_id, run_index = row
    value = data["i"]
    for sequence in range(1, data.get("n", 3) + 1):
        value += 1
        written = conn.execute(
            INSERT_STEP,
            [
                run_id,
                execution_id,
                run_index,
                sequence,
                position(sequence),
                json.dumps(value),
                task_id,
                token,
            ],
        ).fetchone()
        if written is None:
            raise RuntimeError("lease lost on %s" % execution_id)
    finished = conn.execute(FINISH, [task_id, token, run_id, json.dumps(value)])
    if finished.rowcount != 1:
        raise RuntimeError("lease lost on %s" % execution_id)
    return 2 + data.get("n", 3)


def idle_loop(conn: psycopg.Connection) -> None:
    """Work until SIGTERM, waiting for a NOTIFY (50 ms at most) whenever idle."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    conn.execute("LISTEN zart_due")
    ready = os.environ.get("BENCH_READY_FILE")
    if ready:
        Path(ready).touch()
    while not stop:
        if not run_one(conn):
            for _ in conn.notifies(timeout=0.05, stop_after=1):
                pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True, help="libpq connection string")
    parser.add_argument("--idle", action="store_true", help="wait for work; stop on SIGTERM")
    args = parser.parse_args()
    if args.idle:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            idle_loop(conn)
        return
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        cpu = time.process_time()
        processed = statements = 0
        while True:
            sent = run_one(conn)
            statements += max(sent, 1)
            if not sent:
                break
            processed += 1
        cpu = time.process_time() - cpu
    json.dump({"processed": processed, "cpu_s": cpu, "statements": statements}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
