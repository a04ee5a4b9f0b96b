"""BudgetService's use cases: each one short flow over one transaction of the
store, taking and returning plain values (domain/).

reservations (GetLimits, CheckBudget, ReserveBudget, CommitReservation,
ReleaseReservation), ledger (RecordUsage), stats (GetUsageStats, ListUsage),
management (tiers, overrides, caps, system limits, the audit log),
reconciliation, reaper (the TTL job) and paging (the one paging path of the
List use cases). No gRPC, no principals: the edge resolves who acts for whom
and passes user ids; ownership of loaded rows is checked here.
"""
