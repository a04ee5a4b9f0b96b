"""budget: alerts and their silences

- budget_alerts: every alert raised, at most one per (rule, subject, window,
  period_key): the unique key is what makes an alert fire once across
  replicas and concurrent requests. id is the row's key; xact_id is the
  PostgreSQL transaction that inserted it (pg_current_xact_id, 0 on SQLite),
  which WatchAlerts uses to never skip a row committed late (store.alerts).
- budget_alert_silences: a rule silenced for a subject ("" the system),
  until expires_at (NULL: until lifted).

Revision ID: 0007_budget_alerts
Revises: 0006_budget_abuse
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_budget_alerts"
down_revision = "0006_budget_abuse"
branch_labels = None
depends_on = None

Instant = sa.DateTime(timezone=True)
SEVERITIES = "severity IN ('info', 'warning', 'critical')"
WINDOWS = "\"window\" IN ('daily', 'monthly', '')"


def upgrade() -> None:
    op.create_table(
        "budget_alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("window", sa.String(16), nullable=False),
        sa.Column("period_key", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details_json", sa.Text(), nullable=False),
        sa.Column("raised_at", Instant, nullable=False),
        sa.Column("silenced", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("xact_id", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_budget_alerts"),
        sa.UniqueConstraint(
            "rule",
            "subject",
            "window",
            "period_key",
            name="uq_budget_alerts_rule_subject_window_period_key",
        ),
        sa.CheckConstraint(SEVERITIES, name=op.f("ck_budget_alerts_severity")),
        sa.CheckConstraint(WINDOWS, name=op.f("ck_budget_alerts_window")),
    )
    op.create_index("ix_budget_alerts_subject_id", "budget_alerts", ["subject", "id"])
    op.create_index("ix_budget_alerts_xact_id_id", "budget_alerts", ["xact_id", "id"])
    op.create_table(
        "budget_alert_silences",
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", Instant, nullable=False),
        sa.Column("expires_at", Instant, nullable=True),
        sa.PrimaryKeyConstraint("rule", "subject", name="pk_budget_alert_silences"),
    )


def downgrade() -> None:
    op.drop_table("budget_alert_silences")
    op.drop_index("ix_budget_alerts_xact_id_id", "budget_alerts")
    op.drop_index("ix_budget_alerts_subject_id", "budget_alerts")
    op.drop_table("budget_alerts")
