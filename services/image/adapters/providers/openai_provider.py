"""The OpenAI provider: the official client's Images API, failures as domain errors.

The client retries (at most max_retries times) what is worth retrying: rate
limits, honouring Retry-After, 5xx, timeouts and dropped connections. Two 4xx
answers are final and never retried: a content-policy refusal (400, not
retried by the client) and a 429 whose code is insufficient_quota (the account
is out of credit; a response hook marks it `x-should-retry: false`, which the
client obeys).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import logging
import time
from datetime import timedelta
from typing import Literal, cast

import httpx2
import openai

from services.common.errors import ContentRefused, DeadlineExceeded, QuotaExceeded, Unavailable
from services.common.prices import TokenUsage
from services.image.domain.images import GeneratedImage

log = logging.getLogger("recipeimage.image.openai")

SUBJECT = "provider:openai"
CONTENT_POLICY_CODES = frozenset({"moderation_blocked", "content_policy_violation"})
DEFAULT_RATE_LIMIT_RETRY = timedelta(seconds=5)
# insufficient_quota means no credit left: nothing changes until someone pays.
QUOTA_EXHAUSTED_RETRY = timedelta(hours=1)

# The qualities the openai client's types know.
OpenAIQuality = Literal["low", "medium", "high", "xhigh", "max", "auto", "standard", "hd"]

_CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


# The reason of a provider's HTTP 400 that is not a content-policy refusal.
INVALID_REQUEST = "PROVIDER_INVALID_REQUEST"


class OpenAIProvider:
    name = "openai"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout_seconds: float = 120.0,
        max_retries: int = 2,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self._client = openai.OpenAI(
            api_key=api_key,
            base_url=base_url or None,
            timeout=timeout_seconds,
            max_retries=max_retries,
            http_client=openai.DefaultHttpxClient(
                event_hooks={"response": [_final_when_quota_exhausted]}
            ),
        )

    def generate(
        self, prompt: str, model: str, size: str, quality: str, *, end_user: str = ""
    ) -> GeneratedImage:
        try:
            response = self._client.images.generate(
                model=model,
                prompt=prompt,
                size=size,
                quality=_quality(quality),
                n=1,
                # OpenAI's abuse monitoring tells end users apart by this id.
                user=end_user or openai.omit,
            )
        except openai.APITimeoutError:
            raise DeadlineExceeded(
                f"the image provider did not answer within {self.timeout_seconds:g} seconds",
                reason="PROVIDER_TIMEOUT",
            ) from None
        except openai.APIConnectionError as exc:
            log.warning("openai unreachable", extra={"error": str(exc)})
            raise Unavailable(
                "the image provider cannot be reached; try again later",
                reason="PROVIDER_UNAVAILABLE",
            ) from None
        except openai.APIStatusError as exc:
            raise _status_error(exc) from None
        return _image(response, self.name)

    def close(self) -> None:
        self._client.close()


def _final_when_quota_exhausted(response: httpx2.Response) -> None:
    if response.status_code != 429:
        return
    response.read()
    try:
        error = response.json().get("error") or {}
    except ValueError:
        return
    if isinstance(error, dict) and error.get("code") == "insufficient_quota":
        response.headers["x-should-retry"] = "false"


def _status_error(exc: openai.APIStatusError) -> Exception:
    status = exc.status_code
    code = exc.code or ""
    if status == 400 and code in CONTENT_POLICY_CODES:
        refused = ContentRefused(
            "the image provider refused this recipe under its content policy; "
            "change the recipe text or the prompt and try again"
        )
        refused.info.metadata["provider_code"] = code
        return refused
    if status == 429 and code == "insufficient_quota":
        log.error("openai quota exhausted", extra={"request_id": exc.request_id})
        return QuotaExceeded(
            "the image provider's account has no quota left; images cannot be generated "
            "until it is topped up",
            reason="PROVIDER_QUOTA_EXHAUSTED",
            subject=SUBJECT,
            retry_after=QUOTA_EXHAUSTED_RETRY,
        )
    if status == 429:
        return QuotaExceeded(
            "the image provider is rate limiting this service; try again shortly",
            reason="PROVIDER_RATE_LIMITED",
            subject=SUBJECT,
            retry_after=retry_after(exc.response.headers) or DEFAULT_RATE_LIMIT_RETRY,
        )
    if status >= 500:
        log.warning("openai server error", extra={"status": status, "request_id": exc.request_id})
        return Unavailable(
            f"the image provider failed (HTTP {status}); try again later",
            reason="PROVIDER_UNAVAILABLE",
        )
    if status == 400:
        # A request the provider finds invalid: the service's fault for a prompt
        # it built, the caller's for a prompt it gave (GenerateImage tells them apart).
        log.warning(
            "openai refused the request as invalid",
            extra={"code": code, "error": exc.message, "request_id": exc.request_id},
        )
        return Unavailable(
            "the image provider refused the request as invalid (HTTP 400)",
            reason=INVALID_REQUEST,
        )
    # 401/403/404: our credentials or setup are wrong, not the caller's.
    log.error(
        "openai refused the request",
        extra={"status": status, "code": code, "error": exc.message, "request_id": exc.request_id},
    )
    return Unavailable(
        f"the image provider refused this service's request (HTTP {status})",
        reason="PROVIDER_REJECTED",
    )


def retry_after(headers: httpx2.Headers) -> timedelta | None:
    """Retry-After (seconds or an HTTP date) or retry-after-ms, as OpenAI sends them."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is None:
                continue
            seconds = email.utils.mktime_tz(parsed) - time.time()
        if seconds == seconds and 0 <= seconds < 86400:  # not NaN, not absurd
            return timedelta(seconds=seconds)
    return None


def _image(response: openai.types.ImagesResponse, provider: str) -> GeneratedImage:
    first = response.data[0] if response.data else None
    encoded = first.b64_json if first is not None else None
    if not encoded:
        raise Unavailable(
            "the image provider answered without an image", reason="PROVIDER_BAD_RESPONSE"
        )
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise Unavailable(
            "the image provider answered with undecodable image data",
            reason="PROVIDER_BAD_RESPONSE",
        ) from None
    return GeneratedImage(
        data=data,
        content_type=_content_type(response.output_format, data),
        usage=_usage(response.usage),
        provider=provider,
    )


def _content_type(output_format: str | None, data: bytes) -> str:
    if output_format in _CONTENT_TYPES:
        return _CONTENT_TYPES[output_format]
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"


def _usage(usage: openai.types.images_response.Usage | None) -> TokenUsage | None:
    if usage is None:
        return None
    inputs = usage.input_tokens_details
    outputs = usage.output_tokens_details
    return TokenUsage(
        input_text_tokens=inputs.text_tokens if inputs is not None else usage.input_tokens,
        input_image_tokens=inputs.image_tokens if inputs is not None else 0,
        output_image_tokens=outputs.image_tokens if outputs is not None else usage.output_tokens,
        output_text_tokens=outputs.text_tokens if outputs is not None else 0,
    )


def _quality(quality: str) -> OpenAIQuality:
    """The price table, checked by validation, decides which qualities a model
    has; an unknown one is passed on for OpenAI to refuse, as before."""
    return cast(OpenAIQuality, quality)
