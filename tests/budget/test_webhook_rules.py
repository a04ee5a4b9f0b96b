"""Alert webhooks' pure rules: the destinations setting, payloads, signatures
and the retry schedule; and the HTTP sender's outcomes against a real
receiver (no database)."""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from threading import Thread

import pytest

from services.budget.adapters.webhook_http import UrllibSender
from services.budget.domain.alerts import Alert, AlertWindow, Severity
from services.budget.domain.webhooks import (
    PayloadFormat,
    SendResult,
    WebhookDestination,
    WebhookRequest,
    delivery_body,
    parse_destinations,
    retry_delay,
    signature,
    signature_valid,
    webhook_request,
)
from services.budget.settings import BudgetSettings
from services.common.config import ConfigError
from tests.support.webhook_receiver import verify, webhook_receiver

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
SECRET = "whsec-0123456789abcdef"
ALERT = Alert(
    rule="system_limit_100",
    subject="",
    window=AlertWindow.MONTHLY,
    period_key="2026-03-01",
    severity=Severity.CRITICAL,
    message="system monthly budget reached 100% of its limit",
    raised_at=NOW,
    details={"spent_micros": "1000000000"},
    id=7,
)


def test_the_destinations_setting_is_a_json_list() -> None:
    raw = json.dumps(
        [
            {"name": "ops-slack", "url": "https://hooks.slack.com/x", "format": "slack"},
            {
                "name": "pager",
                "url": "http://127.0.0.1:9/hook",
                "secret": SECRET,
                "rules": ["burn_rate"],
                "severities": ["critical"],
            },
        ]
    )
    slack, pager = parse_destinations(raw)
    assert slack == WebhookDestination(
        "ops-slack", "https://hooks.slack.com/x", PayloadFormat.SLACK
    )
    assert pager.format is PayloadFormat.JSON  # the default
    assert pager.rules == {"burn_rate"} and pager.severities == {Severity.CRITICAL}
    assert parse_destinations("") == ()
    env = {"RECIPEIMAGE_ALERT_WEBHOOKS": raw}
    assert BudgetSettings.from_env(env).webhooks.destinations == (slack, pager)


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ("{", "not JSON"),
        ('{"name": "x"}', "a JSON list"),
        ('[{"name": "a b", "url": "http://x", "format": "slack"}]', "name must be"),
        ('[{"name": "a", "url": "ftp://x", "format": "slack"}]', "url must start"),
        ('[{"name": "a", "url": "http://x", "format": "xml"}]', "format must be"),
        ('[{"name": "a", "url": "http://x", "format": "json"}]', "needs a secret"),
        ('[{"name": "a", "url": "http://x", "format": "slack", "severities": ["high"]}]', "sever"),
        ('[{"name": "a", "url": "http://x", "format": "slack", "rules": "burn_rate"}]', "list"),
        ('[{"name": "a", "url": "http://x", "format": "slack", "uri": "x"}]', "unknown keys uri"),
        (
            '[{"name": "a", "url": "http://x", "format": "slack"},'
            ' {"name": "a", "url": "http://y", "format": "slack"}]',
            "unique",
        ),
    ],
)
def test_a_bad_destinations_setting_is_refused_with_the_reason(raw: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match="RECIPEIMAGE_ALERT_WEBHOOKS") as refused:
        BudgetSettings.from_env({"RECIPEIMAGE_ALERT_WEBHOOKS": raw})
    assert complaint in str(refused.value)


def test_filters_and_silences() -> None:
    everything = WebhookDestination("a", "http://x", PayloadFormat.SLACK)
    assert everything.wants(ALERT)
    assert not everything.wants(replace(ALERT, silenced=True))
    assert not replace(everything, rules=frozenset({"burn_rate"})).wants(ALERT)
    assert not replace(everything, severities=frozenset({Severity.WARNING})).wants(ALERT)
    assert replace(everything, severities=frozenset({Severity.CRITICAL})).wants(ALERT)


def test_the_slack_payload_is_text_and_blocks() -> None:
    destination = WebhookDestination("chat", "http://x", PayloadFormat.SLACK)
    payload = json.loads(delivery_body(ALERT, "d-1", destination))
    text = ":rotating_light: [critical] system monthly budget reached 100% of its limit"
    assert payload == {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": "rule `system_limit_100` · system · raised "
                        "2026-03-10T12:00:00Z · delivery d-1",
                    }
                ],
            },
        ],
    }


def test_the_json_payload_carries_the_delivery_id_and_the_alert() -> None:
    destination = WebhookDestination("pager", "http://x", PayloadFormat.JSON, SECRET)
    payload = json.loads(delivery_body(ALERT, "d-1", destination))
    assert payload == {
        "type": "budget.alert",
        "delivery_id": "d-1",
        "destination": "pager",
        "alert": {
            "id": 7,
            "rule": "system_limit_100",
            "subject": "system",
            "user_id": "",
            "window": "monthly",
            "period_key": "2026-03-01",
            "severity": "critical",
            "message": "system monthly budget reached 100% of its limit",
            "raised_at": "2026-03-10T12:00:00Z",
            "details": {"spent_micros": "1000000000"},
        },
    }


def test_signatures_verify_by_the_service_and_by_the_readme_snippet() -> None:
    body = b'{"a":1}'
    header = signature(SECRET, 1_773_144_000, body)
    assert header.startswith("t=1773144000,v1=") and len(header.partition("v1=")[2]) == 64
    for check in (signature_valid, verify):
        assert check(SECRET, header, body, 1_773_144_000 + 300)
        assert not check(SECRET, header, body, 1_773_144_000 + 301)
        assert not check(SECRET, header, body, 1_773_144_000 - 301)
        assert not check("whsec-another-secret-00", header, body, 1_773_144_000)
        assert not check(SECRET, header, b'{"a":2}', 1_773_144_000)
        assert not check(SECRET, "t=x,v1=00", body, 1_773_144_000)
        assert not check(SECRET, "", body, 1_773_144_000)


def test_a_request_is_signed_only_with_a_secret() -> None:
    signed = WebhookDestination("p", "http://x/h", PayloadFormat.JSON, SECRET)
    request = webhook_request(signed, "d-1", b"{}", 3, NOW)
    headers = dict(request.headers)
    assert headers["X-Recipeimage-Delivery"] == "d-1"
    assert headers["X-Recipeimage-Attempt"] == "3"
    assert headers["X-Recipeimage-Signature"] == signature(SECRET, int(NOW.timestamp()), b"{}")
    unsigned = webhook_request(
        WebhookDestination("c", "http://x/h", PayloadFormat.SLACK), "d-1", b"{}", 1, NOW
    )
    assert "X-Recipeimage-Signature" not in dict(unsigned.headers)


def test_retries_double_from_ten_seconds_up_to_the_longest_less_a_random_half() -> None:
    longest = timedelta(minutes=30)
    waits = [retry_delay(n, 0.999999, longest) for n in range(1, 12)]
    assert [round(w.total_seconds()) for w in waits[:5]] == [10, 20, 40, 80, 160]
    assert waits[-1] <= longest and round(waits[-1].total_seconds()) == 1800
    assert retry_delay(1, 0.0, longest) == timedelta(seconds=5)
    assert retry_delay(100, 0.0, longest) == timedelta(minutes=15)
    assert retry_delay(10_000, 0.5, longest) <= longest


def _answering(status: int, headers: dict[str, str]) -> HTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    return server


def _request(url: str) -> WebhookRequest:
    destination = WebhookDestination("p", url, PayloadFormat.JSON, SECRET)
    return webhook_request(destination, "d-1", b"{}", 1, NOW)


def test_the_sender_reports_each_outcome() -> None:
    sender = UrllibSender()
    with webhook_receiver() as receiver:
        assert sender.send(_request(receiver.url("a")), 2).result is SendResult.DELIVERED
        receiver.fail(503)
        failed = sender.send(_request(receiver.url("a")), 2)
        assert (failed.result, failed.detail) == (SendResult.REJECTED, "HTTP 503: ok")
        receiver.hang(2)
        late = sender.send(_request(receiver.url("a")), 0.2)
        assert late.result is SendResult.TIMEOUT
    for status in (202, 204):
        server = _answering(status, {})
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/"
            assert sender.send(_request(url), 2).result is SendResult.DELIVERED
        finally:
            server.shutdown()
            server.server_close()
    redirect = _answering(307, {"Location": "http://127.0.0.1:9/elsewhere"})
    try:
        url = f"http://127.0.0.1:{redirect.server_address[1]}/"
        moved = sender.send(_request(url), 2)
        assert (moved.result, moved.detail) == (SendResult.REJECTED, "HTTP 307")
    finally:
        redirect.shutdown()
        redirect.server_close()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    gone = sender.send(_request(f"http://127.0.0.1:{port}/"), 2)
    assert gone.result is SendResult.UNREACHABLE
