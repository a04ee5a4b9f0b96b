"""The versioned OpenAI image price table (price_table.json) and the arithmetic on it.

Plain Python, no gRPC. All money is an int of micro-USD (1 USD = 1_000_000 micros);
token rates are micros per 1_000_000 tokens. Every token charge is rounded up to a
whole micro on its own, with integer arithmetic only.

Nothing is read at import time: call load_price_table().
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from services.common.config import ConfigError

DEFAULT_PRICE_TABLE = pathlib.Path(__file__).with_name("price_table.json")
MICROS_PER_USD = 1_000_000
TOKENS_PER_RATE = 1_000_000  # token rates are quoted per 1M tokens

STATUSES = ("active", "deprecated", "retired")
_SIZE_RE = re.compile(r"^[1-9][0-9]*x[1-9][0-9]*$")
_MODEL_KEYS = frozenset(
    {
        "status",
        "retired_on",
        "replacement",
        "source",
        "as_of",
        "note",
        "max_prompt_chars",
        "token_rates_micros_per_million",
        "per_image_micros",
    }
)
_RATE_KEYS = ("text_input", "image_input", "image_output")
_OPTIONAL_RATE_KEYS = ("text_output",)

# estimate_prompt_tokens: see the comment there.
PROMPT_TOKEN_OVERHEAD = 16


class PriceError(ValueError):
    """A price lookup the table cannot answer."""


class UnknownModelError(PriceError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown image model {name!r}: it is not in the price table")
        self.name = name


class RetiredModelError(PriceError):
    def __init__(self, name: str, retired_on: dt.date | None, replacement: str | None) -> None:
        when = f"on {retired_on.isoformat()}" if retired_on else "(date not recorded)"
        instead = f"; use {replacement!r} instead" if replacement else ""
        super().__init__(f"image model {name!r} was retired {when}{instead}")
        self.name = name
        self.retired_on = retired_on
        self.replacement = replacement


class UnsupportedOptionError(PriceError):
    """A quality or size the model has no price for; `field` is "quality" or "size"."""

    def __init__(self, model: str, field: str, value: str, allowed: tuple[str, ...]) -> None:
        super().__init__(
            f"image model {model!r} has no {field} {value!r}; expected one of {', '.join(allowed)}"
        )
        self.model = model
        self.field = field
        self.value = value
        self.allowed = allowed


def _ceil_tokens(tokens: int, micros_per_million: int) -> int:
    return -(-tokens * micros_per_million // TOKENS_PER_RATE)


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return value


@dataclass(frozen=True)
class TokenUsage:
    """Token counts as reported by the Images API `usage` object."""

    input_text_tokens: int
    input_image_tokens: int
    output_image_tokens: int
    output_text_tokens: int = 0

    def __post_init__(self) -> None:
        for name in (
            "input_text_tokens",
            "input_image_tokens",
            "output_image_tokens",
            "output_text_tokens",
        ):
            _check_count(name, getattr(self, name))


@dataclass(frozen=True)
class TokenRates:
    """Micros per 1M tokens. text_output is None when the source lists no separate rate."""

    text_input: int
    image_input: int
    image_output: int
    text_output: int | None = None


@dataclass(frozen=True)
class ModelPrice:
    name: str
    status: str
    retired_on: dt.date | None  # for "deprecated": the announced shutdown date
    replacement: str | None
    source: str
    as_of: dt.date
    note: str
    max_prompt_chars: int
    token_rates: TokenRates | None  # None: priced per image only (DALL-E)
    # quality -> size ("WxH") -> micros, read-only; left out of the hash (mappings have none)
    per_image: Mapping[str, Mapping[str, int]] = field(hash=False)

    @property
    def qualities(self) -> tuple[str, ...]:
        return tuple(self.per_image)

    @property
    def sizes(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for by_size in self.per_image.values():
            seen.update(dict.fromkeys(by_size))
        return tuple(seen)

    def per_image_micros(self, quality: str, size: str) -> int:
        by_size = self.per_image.get(quality)
        if by_size is None:
            raise UnsupportedOptionError(self.name, "quality", quality, self.qualities)
        micros = by_size.get(size)
        if micros is None:
            raise UnsupportedOptionError(self.name, "size", size, tuple(by_size))
        return micros

    def max_cost_micros(self, quality: str, size: str, prompt_tokens: int) -> int:
        """The most one image can cost: its per-image figure plus the prompt's text tokens."""
        cost = self.per_image_micros(quality, size)
        _check_count("prompt_tokens", prompt_tokens)
        if self.token_rates is not None:
            cost += _ceil_tokens(prompt_tokens, self.token_rates.text_input)
        return cost

    def actual_cost_micros(self, quality: str, size: str, usage: TokenUsage | None) -> int:
        """Cost of one request from its reported usage; the per-image figure without usage."""
        per_image = self.per_image_micros(quality, size)
        rates = self.token_rates
        if usage is None or rates is None:
            return per_image
        # Output text tokens (the model's reasoning) use the table's text_output rate where
        # the source lists a separate one (in 2026-11-24: gpt-image-1.5, chatgpt-image-latest
        # and gpt-image-2, $10/1M); otherwise the image-output rate, the dearest listed rate.
        text_output = rates.text_output if rates.text_output is not None else rates.image_output
        return (
            _ceil_tokens(usage.input_text_tokens, rates.text_input)
            + _ceil_tokens(usage.input_image_tokens, rates.image_input)
            + _ceil_tokens(usage.output_image_tokens, rates.image_output)
            + _ceil_tokens(usage.output_text_tokens, text_output)
        )


@dataclass(frozen=True)
class TextModelPrice:
    """A text model's token rates (micros per 1M tokens): the optional dish model."""

    name: str
    source: str
    as_of: dt.date
    input: int
    output: int

    def cost_micros(self, input_tokens: int, output_tokens: int) -> int:
        return _ceil_tokens(_check_count("input_tokens", input_tokens), self.input) + _ceil_tokens(
            _check_count("output_tokens", output_tokens), self.output
        )


@dataclass(frozen=True)
class PriceTable:
    version: str
    currency: str
    models: Mapping[str, ModelPrice] = field(hash=False)
    # Text models, apart: an image request can never name one.
    text_models: Mapping[str, TextModelPrice] = field(hash=False, default_factory=dict)

    def text_model(self, name: str) -> TextModelPrice:
        price = self.text_models.get(name)
        if price is None:
            raise UnknownModelError(name)
        return price

    def model(self, name: str) -> ModelPrice:
        price = self.models.get(name)
        if price is None:
            raise UnknownModelError(name)
        return price

    def require_available(self, name: str, on: dt.date | None = None) -> ModelPrice:
        """The model's prices, refusing one that is retired, or deprecated and past its
        shutdown date as of `on` (default: today, local date)."""
        price = self.model(name)
        today = on if on is not None else dt.date.today()
        shut_down = price.retired_on is not None and today >= price.retired_on
        if price.status == "retired" or (price.status == "deprecated" and shut_down):
            raise RetiredModelError(name, price.retired_on, price.replacement)
        return price


def estimate_prompt_tokens(prompt: str) -> int:
    """A conservative upper bound on the prompt's text-token count.

    OpenAI's image models tokenize prompts with o200k_base, a byte-level BPE. English
    prose runs at about 4-5 UTF-8 bytes per token, but recipe text is denser: the
    pre-tokenizer cuts numbers into groups of at most 3 digits and gives the space
    before a number a token of its own, so "2 1/2 cups flour, 1 tsp. salt" (29 bytes)
    is about 13 tokens, 2.2 bytes per token. Half a token per byte covers both. The
    constant covers the fixed overhead the Images API adds to the prompt (6 tokens
    measured on v1/images/generations by OpenAI community members) with margin, and
    rounding on short prompts. It is not a bound for adversarial strings ("1 1 1 ...",
    one byte per token); the only hard bound is one token per byte.
    """
    return -(-len(prompt.encode("utf-8")) // 2) + PROMPT_TOKEN_OVERHEAD


# ---- loading and validation -------------------------------------------------------


class _Invalid(ValueError):
    pass


def _where(path: str, message: str) -> _Invalid:
    return _Invalid(f"{path}: {message}")


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _where(where, f"expected an object, got {type(value).__name__}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _where(where, f"expected a non-empty string, got {value!r}")
    return value


def _optional_text(value: Any, where: str) -> str | None:
    return None if value is None else _text(value, where)


def _date(value: Any, where: str) -> dt.date:
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise _where(where, f"expected a date YYYY-MM-DD, got {value!r}")


def _optional_date(value: Any, where: str) -> dt.date | None:
    return None if value is None else _date(value, where)


def _int(value: Any, where: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _where(where, f"expected an integer (money is int micro-USD), got {value!r}")
    if value < minimum:
        raise _where(where, f"expected an integer >= {minimum}, got {value}")
    return value


def _rates(value: Any, where: str) -> TokenRates | None:
    if value is None:
        return None
    raw = _obj(value, where)
    unknown = set(raw) - set(_RATE_KEYS) - set(_OPTIONAL_RATE_KEYS)
    if unknown:
        raise _where(where, f"unknown keys {sorted(unknown)}")
    for key in _RATE_KEYS:
        if key not in raw:
            raise _where(where, f"missing {key!r}")
    values = {key: _int(raw[key], f"{where}.{key}", minimum=0) for key in _RATE_KEYS}
    text_output = raw.get("text_output")
    if text_output is not None:
        text_output = _int(text_output, f"{where}.text_output", minimum=0)
    return TokenRates(text_output=text_output, **values)


def _per_image(value: Any, where: str) -> Mapping[str, Mapping[str, int]]:
    raw = _obj(value, where)
    if not raw:
        raise _where(where, "lists no quality")
    table: dict[str, Mapping[str, int]] = {}
    for quality, by_size in raw.items():
        at = f"{where}[{quality!r}]"
        _text(quality, at)
        sizes = _obj(by_size, at)
        if not sizes:
            raise _where(at, "lists no size")
        for size in sizes:
            if not isinstance(size, str) or not _SIZE_RE.match(size):
                raise _where(at, f"size {size!r} is not of the form WIDTHxHEIGHT")
        table[quality] = MappingProxyType(
            {size: _int(micros, f"{at}[{size!r}]", minimum=1) for size, micros in sizes.items()}
        )
    return MappingProxyType(table)


def _model(name: str, value: Any) -> ModelPrice:
    where = f"models[{name!r}]"
    raw = _obj(value, where)
    unknown = set(raw) - _MODEL_KEYS
    if unknown:
        raise _where(where, f"unknown keys {sorted(unknown)}")
    required = _MODEL_KEYS - {"note", "token_rates_micros_per_million", "retired_on", "replacement"}
    missing = required - set(raw)
    if missing:
        raise _where(where, f"missing keys {sorted(missing)}")
    status = raw["status"]
    if status not in STATUSES:
        raise _where(f"{where}.status", f"expected one of {', '.join(STATUSES)}, got {status!r}")
    retired_on = _optional_date(raw.get("retired_on"), f"{where}.retired_on")
    if status == "retired" and retired_on is None:
        raise _where(f"{where}.retired_on", "a retired model needs its retirement date")
    source = _text(raw["source"], f"{where}.source")
    if not source.startswith(("https://", "http://")):
        raise _where(f"{where}.source", f"expected a URL, got {source!r}")
    as_of = _date(raw["as_of"], f"{where}.as_of")
    return ModelPrice(
        name=name,
        status=status,
        retired_on=retired_on,
        replacement=_optional_text(raw.get("replacement"), f"{where}.replacement"),
        source=source,
        as_of=as_of,
        note=_optional_text(raw.get("note"), f"{where}.note") or "",
        max_prompt_chars=_int(raw["max_prompt_chars"], f"{where}.max_prompt_chars", minimum=1),
        token_rates=_rates(
            raw.get("token_rates_micros_per_million"), f"{where}.token_rates_micros_per_million"
        ),
        per_image=_per_image(raw["per_image_micros"], f"{where}.per_image_micros"),
    )


def _text_model(name: str, value: Any) -> TextModelPrice:
    where = f"text_models[{name!r}]"
    raw = _obj(value, where)
    keys = {"source", "as_of", "note", "input_micros_per_million", "output_micros_per_million"}
    if set(raw) - keys or (keys - {"note"}) - set(raw):
        raise _where(where, f"expected the keys {sorted(keys)} (note optional)")
    return TextModelPrice(
        name=name,
        source=_text(raw["source"], f"{where}.source"),
        as_of=_date(raw["as_of"], f"{where}.as_of"),
        input=_int(raw["input_micros_per_million"], f"{where}.input_micros_per_million", minimum=1),
        output=_int(
            raw["output_micros_per_million"], f"{where}.output_micros_per_million", minimum=1
        ),
    )


def _table(raw: Any) -> PriceTable:
    doc = _obj(raw, "top level")
    missing = {"version", "currency", "models"} - set(doc)
    if missing:
        raise _where("top level", f"missing keys {sorted(missing)}")
    _date(doc["version"], "version")
    if doc["currency"] != "USD":
        raise _where("currency", f"expected 'USD', got {doc['currency']!r}")
    models_raw = _obj(doc["models"], "models")
    if not models_raw:
        raise _where("models", "lists no model")
    models = {name: _model(name, value) for name, value in models_raw.items()}
    for price in models.values():
        if price.replacement is not None and price.replacement not in models:
            raise _where(
                f"models[{price.name!r}].replacement",
                f"{price.replacement!r} is not a model in the table",
            )
    text_models = {
        name: _text_model(name, value)
        for name, value in _obj(doc.get("text_models", {}), "text_models").items()
    }
    return PriceTable(
        version=doc["version"],
        currency="USD",
        models=MappingProxyType(models),
        text_models=MappingProxyType(text_models),
    )


def configured_price_table(path: pathlib.Path | None) -> PriceTable:
    """The table RECIPEIMAGE_PRICE_TABLE names (None: the shipped one), for a
    service's start: a ConfigError names the setting."""
    try:
        return load_price_table(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"RECIPEIMAGE_PRICE_TABLE: {exc}") from exc


def load_price_table(path: pathlib.Path | None = None) -> PriceTable:
    """Read and validate the price table (default: price_table.json beside this module).

    Raises ValueError naming the file and the offending entry when it is malformed.
    """
    path = DEFAULT_PRICE_TABLE if path is None else pathlib.Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"price table {path}: not valid UTF-8 JSON: {exc}") from exc
    try:
        return _table(raw)
    except _Invalid as exc:
        raise ValueError(f"price table {path}: {exc}") from None
