"""The append-only audit log of limit changes; snapshots are stored as JSON."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from services.budget.domain.audit import AuditAction, AuditEntry, AuditSnapshot
from services.budget.domain.blocks import Block, BlockSource
from services.budget.domain.limits import LimitValues, RateLimitValues, Tier
from services.budget.store.credits import credit_from_json, credit_json
from services.budget.store.models import AuditRow


class AuditStore:
    def __init__(self, session: Session) -> None:
        self.session = session

    def store_entry(self, entry: AuditEntry) -> AuditEntry:
        """Append an entry; returns it with the id the database gave it."""
        entry_id = self.session.execute(
            insert(AuditRow)
            .values(
                created_at=entry.created_at,
                actor=entry.actor,
                actor_role=entry.actor_role,
                action=entry.action.value,
                target_user_id=entry.target_user_id,
                before_json=snapshot_json(entry.before),
                after_json=snapshot_json(entry.after),
            )
            .returning(AuditRow.id)
        ).scalar_one()
        return replace(entry, id=entry_id)

    def load_page(
        self, *, target_user_id: str, before_id: int | None, limit: int
    ) -> list[AuditEntry]:
        """Up to limit entries, newest first, older than before_id; only the
        target user's when target_user_id is given."""
        statement = select(AuditRow)
        if target_user_id:
            statement = statement.where(AuditRow.target_user_id == target_user_id)
        if before_id is not None:
            statement = statement.where(AuditRow.id < before_id)
        statement = statement.order_by(AuditRow.id.desc()).limit(limit)
        return [_entry(row) for row in self.session.scalars(statement)]


def snapshot_json(snapshot: AuditSnapshot) -> str:
    """A snapshot as a JSON object: only what it has, keys sorted."""
    document: dict[str, object] = {}
    if snapshot.tier is not None:
        document["tier"] = snapshot.tier.value
    for name, values in (
        ("overrides", snapshot.overrides),
        ("cap", snapshot.cap),
        ("system", snapshot.system),
    ):
        if values is not None:
            document[name] = values.as_dict()
    if snapshot.rate_overrides is not None:
        document["rate_overrides"] = snapshot.rate_overrides.as_dict()
    if snapshot.block is not None:
        document["block"] = _block_json(snapshot.block)
    if snapshot.credit is not None:
        document["credit"] = credit_json(snapshot.credit)
    return json.dumps(document, sort_keys=True)


def _instant(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _block_json(block: Block) -> dict[str, Any]:
    return {
        "id": block.id,
        "user_id": block.user_id,
        "reason": block.reason,
        "source": block.source.value,
        "created_at": _instant(block.created_at),
        "expires_at": _instant(block.expires_at),
        "created_by": block.created_by,
        "level": block.level,
    }


def _block_from_json(document: dict[str, Any]) -> Block:
    def instant(name: str) -> datetime | None:
        value = document.get(name)
        return datetime.fromisoformat(value) if value else None

    created_at = instant("created_at")
    if created_at is None:  # pragma: no cover - always written
        raise ValueError("an audited block without created_at")
    return Block(
        id=int(document["id"]),
        user_id=document["user_id"],
        reason=document["reason"],
        source=BlockSource(document["source"]),
        created_at=created_at,
        expires_at=instant("expires_at"),
        created_by=document["created_by"],
        level=int(document.get("level", 0)),
    )


def snapshot_from_json(text: str) -> AuditSnapshot:
    document = json.loads(text)

    def values(name: str) -> LimitValues | None:
        return LimitValues.from_dict(document[name]) if name in document else None

    return AuditSnapshot(
        tier=Tier(document["tier"]) if document.get("tier") else None,
        overrides=values("overrides"),
        cap=values("cap"),
        system=values("system"),
        block=_block_from_json(document["block"]) if "block" in document else None,
        rate_overrides=(
            RateLimitValues.from_dict(document["rate_overrides"])
            if "rate_overrides" in document
            else None
        ),
        credit=credit_from_json(document["credit"]) if "credit" in document else None,
    )


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        created_at=row.created_at,
        actor=row.actor,
        actor_role=row.actor_role,
        action=AuditAction(row.action),
        target_user_id=row.target_user_id,
        before=snapshot_from_json(row.before_json),
        after=snapshot_from_json(row.after_json),
    )
