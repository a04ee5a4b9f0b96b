"""What detection costs: an attempt that counts toward no trigger costs no
statement; a counted failure one (the streak's upsert); a generated record
one (the count of its fingerprint's prompts, on the partial fingerprint
index, never a scan of the ledger)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import event

from tests.budget.abuse_support import CONTENT_POLICY, generated, recorded, released, watching
from tests.support.budget_server import running_budget

ON = watching(
    content_policy_streak=(5, 3600),
    input_rejected_streak=(5, 3600),
    ignored_rate_limits=(30, 60),
    cache_busting=(5, 3600),
)
INDEX = "ix_budget_usage_records_user_id_prompt_fingerprint_created_at"


@contextmanager
def statements(engine) -> Iterator[list[tuple[str, object]]]:  # type: ignore[no-untyped-def]
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield captured
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def _cost(budget, call: Callable[..., object], *args) -> list[tuple[str, object]]:  # type: ignore[no-untyped-def]
    with statements(budget.app.engine) as captured:
        call(*args)
    return captured


def test_detection_adds_one_statement_where_it_counts_and_none_elsewhere(
    database_url, authenticator, clock, tokens
) -> None:
    attempts = {
        "cache hit": lambda budget: recorded(budget, tokens),
        "timeout": lambda budget: recorded(budget, tokens, "PROVIDER_TIMEOUT: slow"),
        "refused": lambda budget: recorded(budget, tokens, CONTENT_POLICY),
        "released": lambda budget: released(budget, tokens, CONTENT_POLICY),
        "generated": lambda budget: generated(budget, tokens, "a photo of tomato soup"),
    }
    costs: dict[str, list[int]] = {name: [] for name in attempts}
    for abuse in (None, ON):
        settings = {"abuse": abuse} if abuse else {}
        with running_budget(database_url, authenticator, clock=clock, **settings) as budget:
            for name, attempt in attempts.items():
                costs[name].append(len(_cost(budget, attempt, budget)))
    extra = {name: on - off for name, (off, on) in costs.items()}
    assert extra == {"cache hit": 0, "timeout": 0, "refused": 1, "released": 1, "generated": 1}


def test_the_cache_busting_count_reads_the_fingerprint_index(
    database_url, authenticator, clock, tokens
) -> None:
    with running_budget(database_url, authenticator, clock=clock, abuse=ON) as budget:
        for number in range(3):
            generated(budget, tokens, f"a photo of tomato soup {number}", user=f"user-{number}")
        captured = _cost(budget, generated, budget, tokens, "a photo of tomato soup")
        [(statement, parameters)] = [
            (s, p) for s, p in captured if "prompt_fingerprint" in s and "count" in s.lower()
        ]
        sqlite = budget.app.engine.dialect.name == "sqlite"
        with budget.app.engine.connect() as connection:
            if not sqlite:  # a table this small would be scanned whatever its indexes
                connection.exec_driver_sql("SET enable_seqscan = off")
            explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
            plan = "\n".join(
                str(row[-1]) for row in connection.exec_driver_sql(explain + statement, parameters)
            )
        assert INDEX in plan, plan
