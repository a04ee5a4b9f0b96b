"""What each ledger trigger costs a one-record insert, on PostgreSQL: the
database at head with 100,000 records of 1,000 users, then 2,000 one-record
inserts (a third cache hits), each under EXPLAIN ANALYZE, and the median of
each trigger's time and of the inserts' whole time as the server sees it.

    make bench BENCH=rollup_insert_bench

The rollups' readers stay fast because these triggers run in the inserting
statement; this is their price, beside Reserve+Commit's own (budget_bench).
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict

import psycopg

from services.common.db import create_db_engine
from services.common.migrations import upgrade
from tests.bench.harness import Measurement
from tests.bench.optimization_bench import LOAD_SQL
from tests.support.databases import PostgresDatabases, _conninfo, postgres_admin_url

INSERTS = 2_000
INSERT = """
EXPLAIN (ANALYZE, FORMAT TEXT)
INSERT INTO budget_usage_records (
    request_id, user_id, recipe_id, prompt, prompt_length, size, quality, model,
    provider, cost_micros, success, error_message, fallback_used, generation_time_ms,
    cached, cache_hit, outcome, cost_saved_micros, input_tokens, output_tokens,
    created_at, dish_key, similar_allowed, custom_prompt, image_id)
VALUES (
    %(request)s::text, %(user)s::text, 'recipe-1', 'p', 1, '1024x1024', 'medium',
    'gpt-image-2', 'openai', 5000, true, '', false, 10, %(hit)s::boolean,
    %(kind)s::text, %(outcome)s::text, 0, 40, 1056, now(),
    md5(%(request)s::text) || md5(%(user)s::text), false, false,
    md5(%(user)s::text) || md5(%(request)s::text))
"""
TRIGGER = re.compile(r"Trigger (\S+): time=([\d.]+)")
EXECUTION = re.compile(r"Execution Time: ([\d.]+) ms")


def run(baseline: Measurement) -> None:
    del baseline  # server-side times, not rates
    databases = PostgresDatabases(postgres_admin_url())
    databases.check_reachable()
    url = databases.create_empty()
    try:
        engine = create_db_engine(url)
        try:
            upgrade("budget", engine)
        finally:
            engine.dispose()
        _measure(url)
    finally:
        databases.drop_all()


def _measure(url: str) -> None:
    times: dict[str, list[float]] = defaultdict(list)
    with psycopg.connect(_conninfo(url), autocommit=True) as connection:
        load = {"prefix": "pre-", "users": 1000, "records": 100_000}
        connection.execute(LOAD_SQL, load, prepare=False)
        connection.execute("VACUUM ANALYZE")
        for n in range(INSERTS):
            hit = n % 3 == 0
            params = {
                "request": f"one-{n}",
                "user": f"user-{n % 500}",
                "hit": hit,
                "kind": "exact" if hit else "",
                "outcome": "cache_hit_exact" if hit else "generated",
            }
            plan = "\n".join(str(row[0]) for row in connection.execute(INSERT, params))
            triggers = {name: float(ms) for name, ms in TRIGGER.findall(plan)}
            for name, ms in triggers.items():
                times[name].append(ms)
            times["(all triggers)"].append(sum(triggers.values()))
            execution = EXECUTION.search(plan)
            times["(the insert, triggers included)"].append(
                float(execution.group(1)) if execution else 0.0
            )
    print(f"one-record ledger insert, median of {INSERTS:,} (EXPLAIN ANALYZE):", flush=True)
    for name, values in sorted(times.items()):
        print(f"  {name:<56} {statistics.median(values):>7.3f} ms", flush=True)
