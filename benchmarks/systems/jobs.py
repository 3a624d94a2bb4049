"""What the job-queue peers (PgQueuer, procrastinate) share: a workflow as chained jobs.

A workflow of n steps is n jobs: each step's handler computes its value and enqueues the
next step's job; the last one writes the workflow's result to ``bench_done``. A fan-out
is one job that writes a ``bench_gather`` counter row and enqueues the branch jobs in
bulk; each branch decrements the counter, and the one that brings it to zero writes the
result. The handlers' writes go through the worker's own connection (autocommit), not
in the job queue's transaction: at least once, as an application would write it.
"""

from __future__ import annotations

import uuid

import psycopg

SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_done (
    id text PRIMARY KEY, output bigint NOT NULL, finished_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS bench_gather (
    id text PRIMARY KEY, remaining int NOT NULL, total bigint NOT NULL DEFAULT 0
);
"""
DONE = "INSERT INTO bench_done (id, output) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING"
GATHER = "INSERT INTO bench_gather (id, remaining) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING"
BRANCH = (
    "UPDATE bench_gather SET remaining = remaining - 1, total = total + %s"
    " WHERE id = %s RETURNING remaining, total"
)
FINISHED = "SELECT 1 FROM bench_done WHERE id = %s"
COUNT = "SELECT count(*) FROM bench_done"


def new_id() -> str:
    return str(uuid.uuid4())


def create_schema(conn: psycopg.Connection) -> None:
    conn.execute(SCHEMA)


def first_job(kind: str, wid: str, i: int, size: int) -> dict[str, int | str]:
    """The job that starts a workflow: step 1 of a chain, or the fan-out."""
    if kind == "fanout":
        return {"wf": wid, "n": size}
    return {"wf": wid, "k": 1, "n": size, "v": i}
