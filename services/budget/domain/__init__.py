"""BudgetService's domain: values and rules, plain Python.

No I/O, no SQLAlchemy, no gRPC. windows (calendar windows and their keys),
limits (tiers, overrides, caps and the limits that apply), refusals (the
QuotaExceeded a full window raises), reservations, usage (the ledger's records
and what stats report), audit, reconciliation (its findings) and validation
(rules on plain request values). Everything else in the service imports these.
"""
