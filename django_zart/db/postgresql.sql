-- The statements of the PostgreSQL store, one per operation, read by name by
-- postgresql.py. Each is a single statement: one round trip, one commit in autocommit.
-- Status changes are guarded by the statuses they may leave (%(allowed)s, computed from
-- states.TRANSITIONS); writes for claimed work are fenced by the claim token and lock the
-- claimed task first, so a takeover or a cancel waits for them or makes them match
-- nothing, and a guarded change that is refused writes nothing at all.

-- name: claim
-- {claimable} is the ORM's SELECT of due task ids, FOR UPDATE SKIP LOCKED. Positional
-- parameters, in the order they appear: the token, the lease in seconds, the SELECT's
-- own, and the statuses an execution may leave for RUNNING. Taking over a task whose lease ran out counts a
-- recovery: workers claim only for idle threads, so a held task was running.
WITH claimed AS (
    UPDATE zart_tasks AS t
       SET held_by = %s,
           lease_until = now() + make_interval(secs => %s),
           claimed_at = now(),
           recoveries = t.recoveries + (t.held_by IS NOT NULL)::int,
           wake_pending = false
     WHERE t.id IN ({claimable})
 RETURNING t.id, t.execution_id, t.recoveries, t.kind, t.step_id, t.payload
), running AS (
    UPDATE zart_executions AS e
       SET status = 'RUNNING', started_at = COALESCE(e.started_at, now()), updated_at = now()
      FROM claimed AS c
     WHERE e.id = c.execution_id AND c.kind = 'BODY' AND e.status = ANY(%s)
)
SELECT c.id AS task_id, c.execution_id, e.status, e.workflow, e.input, r.id AS run_id,
       e.run_index, r.reason AS run_reason, e.replay_base,
       -- Python cannot read a timestamp past the year 9999: clamp, so a bad row never
       -- fails the batch it was claimed with.
       CASE WHEN e.deadline_at > '9999-12-31 00:00:00+00' THEN '9999-12-31 00:00:00+00'
            ELSE e.deadline_at END AS deadline_at,
       e.started_at IS NULL AS fresh, c.recoveries, now() AS db_now, c.kind, c.payload,
       st.id AS step_id, st.position, st.name, st.status AS step_status, st.attempts,
       CASE WHEN e.wake_parent THEN e.parent_id END AS parent_id
  FROM claimed AS c
  JOIN zart_executions AS e ON e.id = c.execution_id
  LEFT JOIN zart_execution_runs AS r ON r.execution_id = e.id AND r.index = e.run_index
  LEFT JOIN zart_steps AS st ON st.id = c.step_id

-- name: suspend
WITH fence AS (
    SELECT id, execution_id, wake_pending FROM zart_tasks
     WHERE id = %(task)s AND held_by = %(token)s
       FOR UPDATE
), moved AS (
    UPDATE zart_executions AS e SET status = 'SUSPENDED', updated_at = now()
      FROM fence
     WHERE e.id = fence.execution_id AND e.status = ANY(%(allowed)s)
 RETURNING e.id
), released AS (
    -- An event that arrived while this worker held the execution set wake_pending:
    -- then it is due at once, so that wake-up is not lost.
    UPDATE zart_tasks AS t
       SET held_by = NULL, lease_until = NULL, wake_pending = false,
           run_after = CASE WHEN fence.wake_pending THEN now()
                            ELSE %(wake_at)s::timestamptz END
      FROM fence, moved
     WHERE t.id = fence.id
 RETURNING t.id
)
SELECT (SELECT count(*) FROM released) AS released

-- name: finish
WITH fence AS (
    SELECT execution_id FROM zart_tasks
     WHERE id = %(task)s AND held_by = %(token)s
       FOR UPDATE
), moved AS (
    UPDATE zart_executions AS e
       SET status = %(status)s, output = %(output)s::jsonb, error = %(error)s::jsonb,
           finished_at = now(), updated_at = now()
      FROM fence
     WHERE e.id = fence.execution_id AND e.status = ANY(%(allowed)s)
 RETURNING e.id, e.parent_id, e.wake_parent
), dropped AS (
    -- The body's task and any branch nobody waited for end with the execution.
    DELETE FROM zart_tasks WHERE execution_id IN (SELECT id FROM moved)
), ended AS (
    UPDATE zart_execution_runs
       SET status = %(run_status)s, finished_at = now(), error = %(error)s::jsonb
     WHERE id = %(run)s AND status = 'RUNNING' AND EXISTS (SELECT 1 FROM moved)
), parent AS (
    -- A parent waiting in run_workflow: due now, or as soon as its worker releases it.
    UPDATE zart_tasks AS p
       SET wake_pending = true,
           run_after = CASE WHEN p.held_by IS NULL THEN now() ELSE p.run_after END
      FROM moved
     WHERE moved.wake_parent AND p.execution_id = moved.parent_id AND p.kind = 'BODY'
 RETURNING p.queue
)
SELECT (SELECT count(*) FROM moved) AS moved,
       (SELECT count(pg_notify('{channel}', queue)) FROM parent) AS woken

-- name: heartbeat
WITH leases AS (
    UPDATE zart_tasks SET lease_until = now() + make_interval(secs => %(lease)s)
     WHERE held_by = ANY(%(tokens)s)
)
UPDATE zart_workers
   SET heartbeat_at = now(), expires_at = now() + make_interval(secs => %(lease)s),
       abandoned_threads = %(abandoned)s
 WHERE id = %(worker)s

-- name: next_due_in
SELECT EXTRACT(EPOCH FROM min(run_after) - now()) FROM zart_tasks
 WHERE queue = ANY(%(queues)s) AND held_by IS NULL AND run_after IS NOT NULL
   AND paused_by_id IS NULL

-- name: notify
SELECT pg_notify('{channel}', %(queue)s)

-- name: now
SELECT now()
