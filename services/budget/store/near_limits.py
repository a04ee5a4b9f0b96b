"""ListUsersNearLimits in SQL: every user window row of the current day and
month (an index on scope, kind, start_date), its effective limit computed
from the tier table (bound parameters), the user's override and cap and the
window's active credits, its share, and each user's fullest window; only the
page leaves the database."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from services.budget.domain.limits import Tier, TierLimits
from services.budget.domain.near_limits import BASIS_POINTS, NearLimit
from services.budget.domain.windows import Scope, Span
from services.budget.store.models import CreditRow, UserRow, WindowRow, table

WINDOWS = table(WindowRow)
USERS = table(UserRow)
CREDITS = table(CreditRow)


def _tier_value(tier: ColumnElement[Any], tiers: Mapping[Tier, TierLimits], field: str) -> Any:
    return case(
        *((tier == name.value, literal(getattr(limits, field))) for name, limits in tiers.items()),
    )


def _effective_limit(
    tiers: Mapping[Tier, TierLimits], default_tier: Tier, now: datetime
) -> tuple[ColumnElement[Any], ColumnElement[Any], ColumnElement[Any]]:
    """The user's tier, its window's effective limit and active credit, as
    LimitPolicy.effective computes them, in SQL."""
    tier = func.coalesce(USERS.c.tier, default_tier.value)
    daily = WINDOWS.c.kind == Span.DAY.value
    tier_daily = _tier_value(tier, tiers, "daily_micros")
    tier_monthly = _tier_value(tier, tiers, "monthly_micros")
    limit = case(
        (daily, func.coalesce(USERS.c.override_daily_micros, tier_daily)),
        else_=func.coalesce(USERS.c.override_monthly_micros, tier_monthly),
    )
    cap = case((daily, USERS.c.cap_daily_micros), else_=USERS.c.cap_monthly_micros)
    capped = case((and_(cap.is_not(None), cap < limit), cap), else_=limit)
    active = (
        select(func.coalesce(func.sum(CREDITS.c.amount_micros), 0))
        .where(
            CREDITS.c.scope == WINDOWS.c.scope,
            CREDITS.c.subject == WINDOWS.c.subject,
            CREDITS.c.kind == WINDOWS.c.kind,
            CREDITS.c.start_date == WINDOWS.c.start_date,
            CREDITS.c.expires_at > now,
        )
        .scalar_subquery()
    )
    credit = case((WINDOWS.c.credit_micros > 0, active), else_=0)
    return tier, capped, credit


class NearLimitQueries:
    def __init__(self, session: Session) -> None:
        self.session = session

    def load_page(
        self,
        *,
        tiers: Mapping[Tier, TierLimits],
        default_tier: Tier,
        day: date,
        month: date,
        now: datetime,
        min_share: int,
        after: tuple[int, str] | None,
        limit: int,
    ) -> list[NearLimit]:
        """Up to limit users with a share >= min_share of a current window,
        fullest first then by user id, after the (share, user id) given."""
        tier, capped, credit = _effective_limit(tiers, default_tier, now)
        effective = capped + credit
        used = WINDOWS.c.spent_micros + WINDOWS.c.reserved_micros
        share = case((effective <= 0, BASIS_POINTS), else_=used * BASIS_POINTS // effective).label(
            "share"
        )
        windows = (
            select(
                WINDOWS.c.subject.label("user_id"),
                tier.label("tier"),
                WINDOWS.c.kind,
                share,
                WINDOWS.c.spent_micros,
                WINDOWS.c.reserved_micros,
                effective.label("effective"),
                credit.label("credit"),
            )
            .select_from(WINDOWS.outerjoin(USERS, USERS.c.user_id == WINDOWS.c.subject))
            .where(
                WINDOWS.c.scope == Scope.USER.value,
                or_(
                    and_(WINDOWS.c.kind == Span.DAY.value, WINDOWS.c.start_date == day),
                    and_(WINDOWS.c.kind == Span.MONTH.value, WINDOWS.c.start_date == month),
                ),
            )
            .subquery("windows")
        )
        ranked = select(
            windows,
            func.row_number()
            .over(
                partition_by=windows.c.user_id,
                order_by=(windows.c.share.desc(), windows.c.kind),
            )
            .label("rank"),
        ).subquery("ranked")
        statement = select(ranked).where(ranked.c.rank == 1, ranked.c.share >= min_share)
        if after is not None:
            share_after, user_after = after
            statement = statement.where(
                or_(
                    ranked.c.share < share_after,
                    and_(ranked.c.share == share_after, ranked.c.user_id > user_after),
                )
            )
        statement = statement.order_by(ranked.c.share.desc(), ranked.c.user_id).limit(limit)
        return [
            NearLimit(
                user_id=row.user_id,
                tier=Tier(row.tier),
                span=Span(row.kind),
                share_basis_points=int(row.share),
                spent_micros=int(row.spent_micros),
                reserved_micros=int(row.reserved_micros),
                effective_limit_micros=int(row.effective),
                credit_micros=int(row.credit),
            )
            for row in self.session.execute(statement)
        ]
