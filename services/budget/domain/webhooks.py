"""Alert webhooks: destinations, payloads, signatures and the retry schedule.
Plain Python.

A delivery is one alert sent to one destination. Its body is built once, when
the delivery is queued, and sent unchanged on every attempt: a receiver that
deduplicates on the delivery id sees the same bytes each time. Only the
signature's timestamp is fresh on each attempt, so a receiver can refuse
stale (replayed) requests.

Signature (the generic JSON format, and any destination given a secret):
`X-Recipeimage-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`,
keyed by the destination's secret.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.budget.domain.alerts import SYSTEM_SUBJECT, Alert, Severity

DELIVERY_HEADER = "X-Recipeimage-Delivery"
SIGNATURE_HEADER = "X-Recipeimage-Signature"
ATTEMPT_HEADER = "X-Recipeimage-Attempt"
EVENT_TYPE = "budget.alert"
NAME_LENGTH = 64
# A receiver should refuse a signature older than this (the README's snippet does).
SIGNATURE_TOLERANCE_SECONDS = 300

FIRST_RETRY = timedelta(seconds=10)
DEFAULT_LONGEST_RETRY = timedelta(hours=1)


class PayloadFormat(enum.StrEnum):
    SLACK = "slack"
    JSON = "json"


@dataclass(frozen=True)
class WebhookDestination:
    """Where alerts go. rules and severities filter (empty: every one);
    secret signs each request (required for the json format)."""

    name: str
    url: str
    format: PayloadFormat
    secret: str = ""
    rules: frozenset[str] = frozenset()
    severities: frozenset[Severity] = frozenset()

    def wants(self, alert: Alert) -> bool:
        """Whether this destination is sent the alert (never a silenced one)."""
        return (
            not alert.silenced
            and (not self.rules or alert.rule in self.rules)
            and (not self.severities or alert.severity in self.severities)
        )


def parse_destinations(raw: str) -> tuple[WebhookDestination, ...]:
    """The destinations setting: a JSON list of objects with name, url,
    format ("slack" or "json"), secret, and optional rules and severities
    lists. ValueError names what is wrong."""
    if not raw.strip():
        return ()
    try:
        items = json.loads(raw)
    except ValueError:
        raise ValueError("not JSON: a list of {name, url, format, secret, ...}") from None
    if not isinstance(items, list):
        raise ValueError("must be a JSON list of destinations")
    destinations = tuple(_destination(item, index) for index, item in enumerate(items))
    names = [d.name for d in destinations]
    if len(set(names)) != len(names):
        raise ValueError("destination names must be unique")
    return destinations


_KEYS = {"name", "url", "format", "secret", "rules", "severities"}


def _destination(item: Any, index: int) -> WebhookDestination:
    where = f"destination {index}"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: must be an object")
    unknown = set(item) - _KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    name, url, secret = (_text(item, key, where) for key in ("name", "url", "secret"))
    if not name or len(name) > NAME_LENGTH or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"{where}: name must be 1-{NAME_LENGTH} letters, digits, - or _")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{where} ({name}): url must start with http:// or https://")
    try:
        payload = PayloadFormat(_text(item, "format", where) or "json")
    except ValueError:
        raise ValueError(f"{where} ({name}): format must be slack or json") from None
    if payload is PayloadFormat.JSON and len(secret) < 16:
        raise ValueError(f"{where} ({name}): the json format needs a secret of 16+ characters")
    try:
        severities = frozenset(Severity(s) for s in _texts(item, "severities", where))
    except ValueError:
        raise ValueError(f"{where} ({name}): severities are info, warning, critical") from None
    rules = frozenset(_texts(item, "rules", where))
    return WebhookDestination(name, url, payload, secret, rules, severities)


def _text(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"{where}: {key} must be a string")
    return value.strip()


def _texts(item: dict[str, Any], key: str, where: str) -> list[str]:
    values = item.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{where}: {key} must be a list of strings")
    return values


# -- payloads


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "rule": alert.rule,
        "subject": alert.subject or "system",
        "user_id": alert.subject,
        "window": alert.window.value,
        "period_key": alert.period_key,
        "severity": alert.severity.value,
        "message": alert.message,
        "raised_at": _iso(alert.raised_at),
        "details": dict(alert.details),
    }


def json_payload(alert: Alert, delivery_id: str, destination: str) -> dict[str, Any]:
    """The generic payload: the delivery's id and the whole alert."""
    return {
        "type": EVENT_TYPE,
        "delivery_id": delivery_id,
        "destination": destination,
        "alert": alert_json(alert),
    }


_SEVERITY_MARK = {
    Severity.INFO: ":information_source:",
    Severity.WARNING: ":warning:",
    Severity.CRITICAL: ":rotating_light:",
}


def slack_payload(alert: Alert, delivery_id: str) -> dict[str, Any]:
    """A Slack incoming-webhook message: text (what notifications show) and
    blocks (the message, then rule, subject, time and delivery id)."""
    who = "system" if alert.subject == SYSTEM_SUBJECT else f"user {alert.subject}"
    text = f"{_SEVERITY_MARK[alert.severity]} [{alert.severity.value}] {alert.message}"
    context = (
        f"rule `{alert.rule}` · {who} · raised {_iso(alert.raised_at)} · delivery {delivery_id}"
    )
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


def delivery_body(alert: Alert, delivery_id: str, destination: WebhookDestination) -> bytes:
    """The bytes every attempt of this delivery sends."""
    if destination.format is PayloadFormat.SLACK:
        payload = slack_payload(alert, delivery_id)
    else:
        payload = json_payload(alert, delivery_id, destination.name)
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- signing


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for body sent at timestamp (unix seconds)."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def signature_valid(
    secret: str,
    header: str,
    body: bytes,
    now: int,
    tolerance_seconds: int = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver checks: a v1 signature of body by secret, made within
    tolerance_seconds of now (unix seconds)."""
    fields = [part.partition("=") for part in header.split(",")]
    stamps = [value for key, _, value in fields if key.strip() == "t"]
    digests = [value.strip() for key, _, value in fields if key.strip() == "v1"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit() or not digests:
        return False
    timestamp = int(stamps[0])
    if abs(now - timestamp) > tolerance_seconds:
        return False
    expected = signature(secret, timestamp, body).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, digest) for digest in digests)


# -- requests and their outcomes


@dataclass(frozen=True)
class WebhookRequest:
    """One attempt: a POST of body to url with these headers."""

    url: str
    body: bytes
    headers: Sequence[tuple[str, str]]


def webhook_request(
    destination: WebhookDestination, delivery_id: str, body: bytes, attempt: int, now: datetime
) -> WebhookRequest:
    headers = [
        ("Content-Type", "application/json"),
        ("User-Agent", "recipeimage-webhooks/1"),
        (DELIVERY_HEADER, delivery_id),
        (ATTEMPT_HEADER, str(attempt)),
    ]
    if destination.secret:
        headers.append(
            (SIGNATURE_HEADER, signature(destination.secret, int(now.timestamp()), body))
        )
    return WebhookRequest(destination.url, body, tuple(headers))


class SendResult(enum.StrEnum):
    """How one attempt ended; the metrics' result label."""

    DELIVERED = "delivered"  # a 2xx answer: acknowledged
    REJECTED = "rejected"  # any other answer (3xx included: redirects are not followed)
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"  # no answer: refused, reset, DNS, TLS


@dataclass(frozen=True)
class SendOutcome:
    result: SendResult
    detail: str = ""  # e.g. "HTTP 500", for the row's last_error


def retry_delay(
    attempts: int, jitter: float, longest: timedelta = DEFAULT_LONGEST_RETRY
) -> timedelta:
    """The wait after the attempts-th failed attempt: 10 s doubling each time
    up to longest, of which a random half (jitter in [0, 1)) is taken off, so
    deliveries that failed together do not all come back at once."""
    doublings = min(max(attempts - 1, 0), 30)
    full: timedelta = min(longest, FIRST_RETRY * (1 << doublings))
    return full * (0.5 + 0.5 * jitter)
