"""The webhook sender: one HTTP POST with the standard library, its outcome
as a value (domain.webhooks.SendOutcome), never an exception.

Redirects are not followed: a 3xx is not an acknowledgement (urllib would
turn a redirected POST into a GET without its body). The timeout bounds the
connection and each read of the answer; only the status line and headers
matter, the answer's body is not read beyond a little for the error text.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import IO, Any

from services.budget.domain.webhooks import SendOutcome, SendResult, WebhookRequest

ERROR_BODY_BYTES = 200


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class UrllibSender:
    def __init__(self) -> None:
        self._opener = urllib.request.build_opener(_NoRedirects)

    def send(self, request: WebhookRequest, timeout_seconds: float) -> SendOutcome:
        http_request = urllib.request.Request(
            request.url, data=request.body, headers=dict(request.headers), method="POST"
        )
        try:
            with self._opener.open(http_request, timeout=timeout_seconds) as response:
                status = int(response.status)
        except urllib.error.HTTPError as error:  # an answer, not a 2xx
            return SendOutcome(SendResult.REJECTED, f"HTTP {error.code}{_excerpt(error)}")
        except TimeoutError:
            return SendOutcome(SendResult.TIMEOUT, f"no answer within {timeout_seconds:g} s")
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError):
                return SendOutcome(SendResult.TIMEOUT, f"no answer within {timeout_seconds:g} s")
            return SendOutcome(SendResult.UNREACHABLE, f"unreachable: {error.reason}")
        except (OSError, ValueError) as error:  # reset mid-answer, a malformed answer
            return SendOutcome(SendResult.UNREACHABLE, f"unreachable: {error}")
        if 200 <= status < 300:
            return SendOutcome(SendResult.DELIVERED, f"HTTP {status}")
        return SendOutcome(SendResult.REJECTED, f"HTTP {status}")


def _excerpt(error: urllib.error.HTTPError) -> str:
    try:
        body: IO[bytes] = error
        text = body.read(ERROR_BODY_BYTES).decode("utf-8", "replace").strip()
    except (OSError, ValueError):
        return ""
    finally:
        error.close()
    return f": {text}" if text else ""
