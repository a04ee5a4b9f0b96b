"""Protobuf messages <-> the plain values of alerts. No rules here."""

from __future__ import annotations

from typing import Literal, Protocol, cast

from recipeimage.budget.v1 import alerts_pb2 as apb

from services.budget.app.alert_views import AlertPage, Silence, SubjectRequest
from services.budget.domain.alerts import SYSTEM_SUBJECT, Alert, AlertWindow, Severity
from services.common import protoenum
from services.common.timestamps import to_proto as timestamp

_SEVERITIES = cast(
    dict[Severity, apb.AlertSeverity.ValueType],
    protoenum.to_proto(Severity, apb.AlertSeverity, "ALERT_SEVERITY_"),
)
_SEVERITY_NAMES = {number: severity.value for severity, number in _SEVERITIES.items()}
_WINDOWS = {
    AlertWindow.DAILY: apb.ALERT_WINDOW_DAILY,
    AlertWindow.MONTHLY: apb.ALERT_WINDOW_MONTHLY,
    AlertWindow.NONE: apb.ALERT_WINDOW_UNSPECIFIED,
}


class _HasSubject(Protocol):
    """A request with the oneof subject { user_id, system }."""

    user_id: str
    system: bool

    def WhichOneof(self, oneof_group: Literal["subject"]) -> str | None: ...  # noqa: N802


def subject_request(request: _HasSubject) -> SubjectRequest:
    which = request.WhichOneof("subject")
    if which == "system":
        return SubjectRequest(system=request.system)
    if which == "user_id":
        return SubjectRequest(user_id=request.user_id)
    return SubjectRequest()


def severity_name(value: apb.AlertSeverity.ValueType) -> str:
    """A filter's severity: "" for unspecified (every severity)."""
    return _SEVERITY_NAMES.get(value, "")


def alert(value: Alert) -> apb.Alert:
    system = value.subject == SYSTEM_SUBJECT
    return apb.Alert(
        id=value.id,
        rule=value.rule,
        user_id="" if system else value.subject,
        system=system,
        window=_WINDOWS[value.window],
        period_key=value.period_key,
        severity=_SEVERITIES[value.severity],
        message=value.message,
        details=value.details,
        raise_time=timestamp(value.raised_at),
        silenced=value.silenced,
    )


def alert_page(page: AlertPage) -> apb.ListAlertsResponse:
    return apb.ListAlertsResponse(
        alerts=[alert(a) for a in page.alerts], next_page_token=page.next_page_token
    )


def silence(value: Silence) -> apb.AlertSilence:
    system = value.subject == SYSTEM_SUBJECT
    message = apb.AlertSilence(
        rule=value.rule,
        user_id="" if system else value.subject,
        system=system,
        created_by=value.created_by,
        create_time=timestamp(value.created_at),
    )
    if value.expires_at is not None:
        message.expire_time.CopyFrom(timestamp(value.expires_at))
    return message
