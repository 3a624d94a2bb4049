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

-- name: lock_limit_keys
-- Transaction-level advisory locks on concurrency keys, taken in one order so that two
-- claimers never wait for each other in a circle.
SELECT count(pg_advisory_xact_lock(hashtextextended('zart-limit:' || k, 0)))
  FROM (SELECT DISTINCT k FROM unnest(%(keys)s::varchar[]) AS u(k) ORDER BY k) AS keys

-- name: notify
SELECT pg_notify('{channel}', %(queue)s)

-- name: now
SELECT now()

-- name: create_executions
-- New executions with their first run and their body's task, in one statement: ids
-- already taken are left alone (the caller finds them missing from the result), and
-- the queues of the inserted, unpaused ones are notified on commit.
WITH new AS (
    SELECT *
      FROM unnest(%(ids)s::varchar[], %(workflows)s::varchar[], %(queues)s::varchar[],
                  %(inputs)s::jsonb[], %(timeouts)s::float8[], %(parents)s::varchar[],
                  %(wake_parents)s::bool[], %(paused_by)s::bigint[], %(reasons)s::varchar[],
                  %(triggered_by)s::varchar[], %(priorities)s::int[],
                  %(limit_keys)s::varchar[], %(limit_maxes)s::int[])
        AS n(id, workflow, queue, input, timeout, parent_id, wake_parent, paused_by, reason,
             triggered_by, priority, limit_key, limit_max)
), created AS (
    INSERT INTO zart_executions AS e
           (id, workflow, queue, status, input, run_index, replay_base, deadline_at,
            parent_id, wake_parent, created_at, updated_at)
    SELECT id, workflow, queue, CASE WHEN paused_by IS NULL THEN 'PENDING' ELSE 'PAUSED' END,
           input, 1, 1, now() + make_interval(secs => timeout), parent_id, wake_parent,
           now(), now()
      FROM new
        ON CONFLICT (id) DO NOTHING
 RETURNING e.id
), runs AS (
    INSERT INTO zart_execution_runs (execution_id, index, reason, status, triggered_by,
                                     created_at)
    SELECT new.id, 1, new.reason, 'RUNNING', new.triggered_by, now()
      FROM created JOIN new USING (id)
), tasks AS (
    INSERT INTO zart_tasks (execution_id, kind, queue, priority, run_after, wake_pending,
                            recoveries, paused_by_id, limit_key, limit_max, blocked, created_at)
    SELECT new.id, 'BODY', new.queue, -new.priority, now(), false, 0, new.paused_by,
           new.limit_key, new.limit_max, false, now()
      FROM created JOIN new USING (id)
)
SELECT (SELECT coalesce(array_agg(id), '{}') FROM created),
       (SELECT count(pg_notify('{channel}', queue))
          FROM (SELECT DISTINCT new.queue FROM created JOIN new USING (id)
                 WHERE new.paused_by IS NULL) AS due)

-- name: schedule_branches
-- A fan-out in one statement: the branches' step rows (fenced by the body's claim, as
-- every checkpoint) and their tasks; nothing is written for a cancelled execution.
WITH fence AS (
    SELECT e.queue, e.status, t.priority
      FROM zart_tasks AS t JOIN zart_executions AS e ON e.id = t.execution_id
     WHERE t.id = %(task)s AND t.held_by = %(token)s
       FOR SHARE OF t
), points AS (
    SELECT *
      FROM unnest(%(sequences)s::int[], %(positions)s::varchar[], %(names)s::varchar[],
                  %(hashes)s::varchar[], %(payloads)s::jsonb[])
           WITH ORDINALITY AS p(sequence, position, name, call_hash, payload, n)
), steps AS (
    INSERT INTO zart_steps (run_id, execution_id, run_index, sequence, position, name, kind,
                            status, attempts, call_hash, created_at, updated_at)
    SELECT %(run)s, %(execution)s, %(run_index)s, p.sequence, p.position, p.name, 'BRANCH',
           'SCHEDULED', 0, p.call_hash, %(at)s, %(at)s
      FROM points AS p, fence
     WHERE fence.status <> 'CANCELLED'
        ON CONFLICT (run_id, position) DO UPDATE
       SET status = excluded.status, result = NULL, error = NULL, attempts = 0,
           wake_at = NULL, updated_at = excluded.updated_at
 RETURNING id, position
), tasks AS (
    INSERT INTO zart_tasks (execution_id, kind, queue, step_id, payload, priority, run_after,
                            wake_pending, recoveries, created_at)
    SELECT %(execution)s, 'BRANCH', fence.queue, s.id, p.payload, fence.priority, now(), false,
           0, now()
      FROM steps AS s JOIN points AS p USING (position), fence
 RETURNING queue
)
SELECT (SELECT status FROM fence),
       (SELECT array_agg(s.id ORDER BY p.n) FROM steps AS s JOIN points AS p USING (position)),
       (SELECT count(pg_notify('{channel}', queue)) FROM (SELECT DISTINCT queue FROM tasks) AS q)

-- name: lock_body
SELECT id FROM zart_tasks WHERE execution_id = %(execution)s AND kind = 'BODY' FOR UPDATE

-- name: count_group
-- A group the body just suspended on, its body's task locked by the suspend: how many of
-- its branches are unfinished, seen after every branch that finished before the lock.
UPDATE zart_steps AS g
   SET result = jsonb_set(g.result, '{remaining}', to_jsonb((
         SELECT count(*) FROM zart_steps AS s
          WHERE s.run_id = g.run_id
            AND s.position IN (SELECT jsonb_array_elements_text(g.result->'positions'))
            AND s.status NOT IN ('COMPLETED', 'FAILED'))))
 WHERE g.run_id = %(run)s AND g.position = %(position)s AND g.kind = 'GROUP'
   AND g.status = 'WAITING'

-- name: claim_siblings
-- More due branches of the same step of one execution, for the thread that just ran one
-- of them quickly: claimed under that thread's token (renewed by its heartbeats) and
-- lease. Only free tasks: one taken over from a dead worker is left to the claim
-- statement, which counts the recovery. In no order: siblings are equals, and without a
-- sort the scan stops at the first free ones.
WITH taken AS (
    UPDATE zart_tasks AS t
       SET held_by = %(token)s, lease_until = now() + make_interval(secs => %(lease)s),
           claimed_at = now(), wake_pending = false
     WHERE t.id IN (
           SELECT s.id
             FROM zart_tasks AS s JOIN zart_steps AS st ON st.id = s.step_id
            WHERE s.execution_id = %(execution)s AND s.kind = 'BRANCH'
              AND st.run_id = %(run)s AND st.name = %(name)s
              AND s.run_after <= now() AND s.paused_by_id IS NULL AND s.recoveries = 0
              AND s.held_by IS NULL
            LIMIT %(limit)s
              FOR UPDATE OF s SKIP LOCKED)
 RETURNING t.id, t.step_id, t.payload
)
SELECT taken.id, taken.payload, st.id, st.position, st.name, st.status, st.attempts
  FROM taken JOIN zart_steps AS st ON st.id = taken.step_id
 ORDER BY taken.id

-- name: finish_branches
-- The outcomes of branches, one or a batch (claim_siblings), run after lock_body in its
-- transaction: the branches of one execution finish one batch at a time, each seeing the
-- ones before. All of them are recorded or, if one of their tasks is no longer held (the
-- caller rolls back), none. A waiting group keeps the count of its unfinished branches
-- (count_group): the batch that brings it to 0 completes the group and wakes the body,
-- with no scan of the group. A body that has not suspended on a group yet gets
-- wake_pending, so its release makes it due at once.
WITH mine AS (
    DELETE FROM zart_tasks WHERE id = ANY(%(tasks)s) AND held_by = %(token)s RETURNING id
), outcome AS (
    SELECT *
      FROM unnest(%(steps)s::bigint[], %(statuses)s::varchar[], %(results)s::jsonb[],
                  %(errors)s::jsonb[], %(attempts)s::int[])
        AS o(step_id, status, result, error, attempts)
), step AS (
    UPDATE zart_steps AS s
       SET status = o.status, result = o.result, error = o.error, attempts = o.attempts,
           wake_at = NULL, updated_at = %(at)s
      FROM outcome AS o
     WHERE s.id = o.step_id AND (SELECT count(*) FROM mine) = cardinality(%(tasks)s::bigint[])
 RETURNING s.position, s.status
), waiting AS (
    SELECT g.id, g.result ? 'remaining' AS counted, g.result->'positions' AS positions
      FROM zart_steps AS g
     WHERE g.run_id = %(run)s AND g.kind = 'GROUP' AND g.status = 'WAITING'
), counted AS (
    UPDATE zart_steps AS g
       SET result = jsonb_set(g.result, '{remaining}',
                              to_jsonb((g.result->>'remaining')::int - m.n)),
           status = CASE WHEN (g.result->>'remaining')::int - m.n <= 0 THEN 'COMPLETED'
                         ELSE g.status END
      FROM waiting AS w,
           LATERAL (SELECT count(*) AS n FROM step
                     WHERE step.status IN ('COMPLETED', 'FAILED')
                       AND w.positions ? step.position) AS m
     WHERE g.id = w.id AND w.counted AND m.n > 0
 RETURNING g.status
), woken AS (
    UPDATE zart_tasks AS b
       SET wake_pending = true,
           run_after = CASE WHEN b.held_by IS NULL THEN now() ELSE b.run_after END
     WHERE b.execution_id = %(execution)s AND b.kind = 'BODY' AND EXISTS (SELECT 1 FROM step)
       AND (EXISTS (SELECT 1 FROM counted WHERE status = 'COMPLETED')
            OR (b.held_by IS NOT NULL AND NOT EXISTS (SELECT 1 FROM waiting)))
 RETURNING b.queue
)
SELECT (SELECT count(*) FROM mine),
       (SELECT count(*) FROM waiting WHERE NOT counted),
       (SELECT count(pg_notify('{channel}', queue)) FROM woken)
