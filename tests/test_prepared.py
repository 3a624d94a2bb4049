"""The store's statements are prepared on the server where Django's connection allows it."""

import threading
from collections.abc import Iterator

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

import django_zart as zart
from django_zart import engine
from django_zart.db import get_store
from django_zart.db.cursors import prepares, store_cursor
from django_zart.worker import Worker, WorkerOptions

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture(params=[5, None], ids=["prepared", "unprepared"])
def prepare_threshold(request: pytest.FixtureRequest) -> Iterator[int | None]:
    """The connection as Django opens it with OPTIONS prepare_threshold, or without."""
    connection.ensure_connection()
    raw = connection.connection
    before = raw.prepare_threshold
    raw.prepare_threshold = request.param
    try:
        yield request.param
    finally:
        raw.prepare_threshold = before


def prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_a_workflow_runs_the_same_either_way(prepare_threshold: int | None) -> None:
    """Started, claimed, checkpointed and finished on this thread's connection."""
    ids = zart.start_many("arith", [{"a": i, "b": 1} for i in range(3)])
    ids.append(zart.start("arith", {"a": 9, "b": 1}))
    store = get_store()
    claims = store.claim(queues=["default"], limit=10, lease=30)
    assert sorted(c.execution_id for c in claims) == sorted(ids)
    for claim in claims:
        assert engine.execute(claim, store) == "completed"
    assert [zart.status(i).output for i in ids] == [{"sum": a + 111} for a in (0, 1, 2, 9)]
    statements = prepared_statements()
    if prepare_threshold is None:
        assert statements == []
    else:
        assert any("INSERT INTO zart_steps" in s for s in statements)
        assert any("WITH new AS" in s for s in statements)  # start() and start_many()
        assert any("WITH claimed AS" in s for s in statements)


def test_queries_logged_go_through_djangos_cursor(prepare_threshold: int | None) -> None:
    """``CaptureQueriesContext`` (or DEBUG) sees every statement of the store."""
    with CaptureQueriesContext(connection) as queries:
        assert not prepares()
        zart.start("arith", {"a": 1, "b": 1}, execution_id="watched")
    assert "INSERT INTO zart_executions" in queries.captured_queries[-1]["sql"]


def test_an_execute_wrapper_sees_the_store_statements(prepare_threshold: int | None) -> None:
    seen: list[str] = []

    def wrapper(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        zart.start("arith", {"a": 1, "b": 1}, execution_id="wrapped")
    assert "INSERT INTO zart_executions" in seen[-1]


def test_errors_are_djangos_and_a_broken_transaction_is_refused(
    prepare_threshold: int | None,
) -> None:
    with pytest.raises(DatabaseError), store_cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table_here")
    with transaction.atomic():
        with (
            pytest.raises(DatabaseError),
            transaction.atomic(savepoint=False),
            store_cursor() as cursor,
        ):
            cursor.execute("SELECT 1/0")
        with pytest.raises(TransactionManagementError), store_cursor() as cursor:
            cursor.execute("SELECT 1")  # Django refuses: the transaction is broken
    with store_cursor() as cursor:
        cursor.execute("SELECT %s::int + 1", [41])
        assert cursor.fetchone()[0] == 42


def test_aware_datetimes_come_back_in_utc(prepare_threshold: int | None) -> None:
    with store_cursor() as cursor:
        cursor.execute("SELECT now()")
        now = cursor.fetchone()[0]
    assert now.utcoffset().total_seconds() == 0


@pytest.fixture
def status_column_widened() -> Iterator[None]:
    """``zart_executions.status`` one type wider, as a migration would make it, and back."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT character_maximum_length FROM information_schema.columns"
            " WHERE table_name = 'zart_executions' AND column_name = 'status'"
        )
        (length,) = cursor.fetchone()
        cursor.execute("ALTER TABLE zart_executions ALTER COLUMN status TYPE varchar(%d)" % 64)
    connection.close()  # this thread's own prepared statements are stale too
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "ALTER TABLE zart_executions ALTER COLUMN status TYPE varchar(%d)" % length
            )
        connection.close()


def test_a_migration_under_a_running_worker_fails_no_execution(
    request: pytest.FixtureRequest,
) -> None:
    """A running worker's statements, prepared before a migration changed the type of a
    column they return, are refused by PostgreSQL from then on; the worker replays what
    it ran on a fresh connection instead of failing it."""
    connection.ensure_connection()
    if connection.connection.prepare_threshold is None:
        pytest.skip("runs where the store's statements are prepared")
    worker = Worker(WorkerOptions.from_settings(concurrency=1, poll_interval=0.05))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        before = zart.start("arith", {"a": 1, "b": 1})
        assert zart.wait_completion(before, timeout=20) == {"sum": 112}
        request.getfixturevalue("status_column_widened")
        after = [zart.start("arith", {"a": a, "b": 1}) for a in range(3)]
        for a, execution_id in enumerate(after):
            assert zart.wait_completion(execution_id, timeout=20) == {"sum": a + 111}
    finally:
        worker.request_stop()
        thread.join(30)
    assert not thread.is_alive()
