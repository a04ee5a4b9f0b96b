"""BudgetService's store: the tables and the SQL, the only code that talks to
the database.

One module per aggregate: limits (users' stored settings and the system
limits), windows (the counters money is held and spent in), reservations,
usage (the ledger, its pages) and usage_summary (GetUsageStats' one statement),
audit, reconciliation (its read-only checks). Each store runs in the session
it is given; unit_of_work opens one transaction per use case and hands them
out. Hot-path statements are built once per dialect (Core, bind parameters)
and rows are read by column name. Takes and returns domain values.
"""
