"""services.common.prices and the shipped price_table.json."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from pathlib import Path

import pytest

from services.common.prices import (
    DEFAULT_PRICE_TABLE,
    PriceError,
    PriceTable,
    RetiredModelError,
    TokenUsage,
    UnknownModelError,
    UnsupportedOptionError,
    estimate_prompt_tokens,
    load_price_table,
)

GPT_SIZES = ("1024x1024", "1024x1536", "1536x1024")


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return load_price_table()


@pytest.fixture
def shipped() -> dict:
    return json.loads(DEFAULT_PRICE_TABLE.read_text(encoding="utf-8"))


def test_shipped_table_loads(table: PriceTable) -> None:
    assert table.version == "2026-11-24"
    assert table.currency == "USD"
    assert set(table.models) == {
        "gpt-image-2.6-sunburst",
        "gpt-image-2.6-flare",
        "gpt-image-2.5-sunburst",
        "gpt-image-2.5-flare",
        "gpt-image-2",
        "gpt-image-1.5",
        "chatgpt-image-latest",
        "gpt-image-1-mini",
        "gpt-image-1",
        "dall-e-2",
        "dall-e-3",
    }


def test_every_active_model_is_fully_priced(table: PriceTable) -> None:
    active = [m for m in table.models.values() if m.status == "active"]
    assert len(active) >= 5
    for model in active:
        rates = model.token_rates
        assert rates is not None, model.name
        for rate in (rates.text_input, rates.image_input, rates.image_output):
            assert type(rate) is int and rate > 0, model.name
        assert {"low", "medium", "high"} <= set(model.qualities), model.name
        assert set(GPT_SIZES) <= set(model.sizes), model.name
        for quality in model.qualities:
            for size in model.sizes:
                micros = model.per_image_micros(quality, size)
                assert type(micros) is int and micros > 0, (model.name, quality, size)


def test_money_is_integer_micros_everywhere(shipped: dict) -> None:
    for name, model in shipped["models"].items():
        for by_size in model["per_image_micros"].values():
            assert all(type(v) is int for v in by_size.values()), name
        rates = model.get("token_rates_micros_per_million") or {}
        assert all(type(v) is int for v in rates.values()), name


def test_records_source_date_and_limits(table: PriceTable) -> None:
    version = dt.date.fromisoformat(table.version)
    for model in table.models.values():
        assert model.source.startswith("https://"), model.name
        assert model.as_of <= version, model.name
        assert model.max_prompt_chars > 0, model.name
        if model.replacement is not None:
            assert table.models[model.replacement].status == "active", model.name
    assert table.model("dall-e-2").max_prompt_chars == 1000
    assert table.model("dall-e-3").max_prompt_chars == 4000
    assert table.model("gpt-image-2.5-flare").max_prompt_chars == 32000


def test_figures_published_by_openai_are_recorded_exactly(table: PriceTable) -> None:
    mini = table.model("gpt-image-1-mini")
    assert mini.per_image_micros("low", "1024x1024") == 5_000  # $0.005
    assert mini.per_image_micros("high", "1536x1024") == 52_000  # $0.052
    assert mini.token_rates is not None and mini.token_rates.image_output == 8_000_000
    old = table.model("gpt-image-1")
    assert old.per_image_micros("high", "1024x1536") == 250_000  # $0.25
    sunburst = table.model("gpt-image-2.6-sunburst")
    assert sunburst.token_rates is not None
    assert (
        sunburst.token_rates.text_input,
        sunburst.token_rates.image_input,
        sunburst.token_rates.image_output,
    ) == (5_000_000, 8_000_000, 30_000_000)


@pytest.mark.parametrize(
    ("name", "date", "replacement"),
    [
        ("gpt-image-1", "2026-10-23", "gpt-image-2.5-sunburst"),
        ("dall-e-2", "2026-05-12", "gpt-image-2.5-sunburst"),
        ("dall-e-3", "2026-05-12", "gpt-image-2.5-sunburst"),
    ],
)
def test_retired_models_are_refused_with_their_date(
    table: PriceTable, name: str, date: str, replacement: str
) -> None:
    with pytest.raises(RetiredModelError) as caught:
        table.require_available(name, on=dt.date(2026, 11, 24))
    error = caught.value
    assert isinstance(error, PriceError) and isinstance(error, ValueError)
    assert error.retired_on == dt.date.fromisoformat(date)
    assert error.replacement == replacement
    assert date in str(error) and replacement in str(error)
    # Still priced, for settling old usage.
    assert table.model(name).per_image_micros(*_first_option(table, name)) > 0


def test_deprecated_models_are_served_until_their_shutdown(table: PriceTable) -> None:
    for name in ("gpt-image-1-mini", "gpt-image-1.5", "chatgpt-image-latest"):
        model = table.model(name)
        assert model.status == "deprecated"
        assert model.retired_on == dt.date(2026, 12, 1)
        assert table.require_available(name, on=dt.date(2026, 11, 30)) is model
        with pytest.raises(RetiredModelError, match="2026-12-01"):
            table.require_available(name, on=dt.date(2026, 12, 1))
    assert table.require_available("gpt-image-2.5-flare", on=dt.date(2030, 1, 1)).status == "active"


def test_unknown_model(table: PriceTable) -> None:
    with pytest.raises(UnknownModelError) as caught:
        table.model("gpt-image-9")
    assert caught.value.name == "gpt-image-9"
    assert isinstance(caught.value, PriceError) and isinstance(caught.value, ValueError)
    with pytest.raises(UnknownModelError):
        table.require_available("dall-e-4")


def test_unknown_quality_and_size(table: PriceTable) -> None:
    model = table.model("gpt-image-2")
    with pytest.raises(UnsupportedOptionError) as caught:
        model.per_image_micros("hd", "1024x1024")
    assert caught.value.field == "quality" and isinstance(caught.value, PriceError)
    with pytest.raises(UnsupportedOptionError) as caught:
        model.per_image_micros("low", "1792x1024")
    assert caught.value.field == "size"
    with pytest.raises(UnsupportedOptionError) as caught:
        model.max_cost_micros("low", "512x512", 10)
    assert caught.value.field == "size"
    with pytest.raises(UnsupportedOptionError) as caught:
        model.actual_cost_micros("xhigh", "1024x1024", None)
    assert caught.value.field == "quality"
    dalle2 = table.model("dall-e-2")
    assert dalle2.qualities == ("standard",)
    assert dalle2.sizes == ("256x256", "512x512", "1024x1024")
    assert dalle2.per_image_micros("standard", "512x512") == 18_000


def test_max_cost_covers_the_image_and_grows_with_the_prompt(table: PriceTable) -> None:
    for model in table.models.values():
        for quality in model.qualities:
            for size in model.per_image[quality]:
                per_image = model.per_image_micros(quality, size)
                assert model.max_cost_micros(quality, size, 0) == per_image
                assert model.max_cost_micros(quality, size, 500) >= per_image
    flare = table.model("gpt-image-2.5-flare")
    costs = [
        flare.max_cost_micros("low", "1024x1024", estimate_prompt_tokens("x" * n))
        for n in (0, 10, 100, 1_000, 32_000)
    ]
    assert costs == sorted(costs) and len(set(costs)) == len(costs)
    # 1_001 tokens at $5.00/1M = 5_005 micros on top of the $0.00588 image.
    assert flare.max_cost_micros("low", "1024x1024", 1_001) == 5_880 + 5_005
    # One token at $5.00/1M is 5 micros; a rate that leaves a fraction rounds up.
    mini = table.model("gpt-image-1-mini")  # text input $2.00/1M
    assert mini.max_cost_micros("low", "1024x1024", 1) == 5_000 + 2
    with pytest.raises(ValueError):
        flare.max_cost_micros("low", "1024x1024", -1)


def test_actual_cost_from_usage_by_hand(table: PriceTable) -> None:
    gpt2 = table.model("gpt-image-2")  # $5 text in, $8 image in, $30 image out, $10 text out
    usage = TokenUsage(
        input_text_tokens=57,
        input_image_tokens=1_000,
        output_image_tokens=1_756,
        output_text_tokens=100,
    )
    # 57*5 + 1000*8 + 1756*30 + 100*10
    assert gpt2.actual_cost_micros("medium", "1024x1024", usage) == 285 + 8_000 + 52_680 + 1_000
    mini = table.model("gpt-image-1-mini")  # $2 text in, $2.50 image in, $8 image out, no text out
    usage = TokenUsage(
        input_text_tokens=7, input_image_tokens=3, output_image_tokens=272, output_text_tokens=1
    )
    # 7*2 + ceil(3*2.5) + 272*8 + 1*8 (text output falls back to the image-output rate)
    assert mini.actual_cost_micros("low", "1024x1024", usage) == 14 + 8 + 2_176 + 8


def test_actual_cost_without_usage_is_the_per_image_figure(table: PriceTable) -> None:
    flare = table.model("gpt-image-2.6-flare")
    assert flare.actual_cost_micros("high", "1536x1024", None) == flare.per_image_micros(
        "high", "1536x1024"
    )
    dalle3 = table.model("dall-e-3")  # no token rates: usage is ignored
    usage = TokenUsage(input_text_tokens=10, input_image_tokens=0, output_image_tokens=999)
    assert dalle3.actual_cost_micros("hd", "1792x1024", usage) == 120_000
    assert dalle3.max_cost_micros("hd", "1792x1024", 4_000) == 120_000


def test_token_usage_rejects_bad_counts() -> None:
    with pytest.raises(ValueError):
        TokenUsage(input_text_tokens=-1, input_image_tokens=0, output_image_tokens=0)
    with pytest.raises(ValueError):
        TokenUsage(input_text_tokens=1, input_image_tokens=0, output_image_tokens=2.5)  # type: ignore[arg-type]


def _first_option(table: PriceTable, name: str) -> tuple[str, str]:
    model = table.model(name)
    quality = model.qualities[0]
    return quality, next(iter(model.per_image[quality]))


_DELETE = object()
RATES = "models/gpt-image-2/token_rates_micros_per_million"


def _break(path: str, value: object):
    def mutate(doc: dict) -> None:
        *parents, last = path.split("/")
        node = doc
        for key in parents:
            node = node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_break("models/gpt-image-2/per_image_micros/low/1024x1024", 0.006), "integer"),
        (_break("models/gpt-image-2/per_image_micros/low/1024x1024", True), "integer"),
        (_break("models/gpt-image-2/per_image_micros/low/1024x1024", 0), ">= 1"),
        (_break("models/gpt-image-2/per_image_micros/low/big", 5), "WIDTHxHEIGHT"),
        (_break("models/gpt-image-2/per_image_micros", {}), "no quality"),
        (_break(f"{RATES}/image_output", "30"), "integer"),
        (_break(f"{RATES}/text_input", _DELETE), "missing"),
        (_break(f"{RATES}/cached", 1), "unknown keys"),
        (_break("models/gpt-image-2/status", "sunset"), "status"),
        (_break("models/gpt-image-2/colour", "red"), "unknown keys"),
        (_break("models/gpt-image-2/source", _DELETE), "missing keys"),
        (_break("models/gpt-image-2/source", "openai pricing page"), "URL"),
        (_break("models/gpt-image-2/as_of", "24/11/2026"), "YYYY-MM-DD"),
        (_break("models/gpt-image-2/max_prompt_chars", 0), ">= 1"),
        (_break("models/gpt-image-1/retired_on", None), "retirement date"),
        (_break("models/gpt-image-1/replacement", "gpt-image-7"), "not a model"),
        (_break("currency", "EUR"), "USD"),
        (_break("version", "latest"), "YYYY-MM-DD"),
        (_break("models", {}), "no model"),
        (_break("models", _DELETE), "missing keys"),
    ],
)
def test_malformed_file_raises_value_error(
    tmp_path: Path, shipped: dict, mutate, message: str
) -> None:
    doc = copy.deepcopy(shipped)
    mutate(doc)
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ValueError, match=message) as caught:
        load_price_table(path)
    assert str(path) in str(caught.value)


def test_not_json_raises_value_error(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"version": "2026-11-24",', encoding="utf-8")
    with pytest.raises(ValueError, match="JSON"):
        load_price_table(path)


def test_loads_an_explicit_path(tmp_path: Path, shipped: dict) -> None:
    path = tmp_path / "copy.json"
    path.write_text(json.dumps(shipped), encoding="utf-8")
    assert load_price_table(path) == load_price_table()


def _rough_token_count(text: str) -> int:
    """A rough o200k_base count, erring high: a word per token (long words split every 8
    letters), numbers in groups of 3 digits, a token per punctuation mark, a token for a
    space before a number, plus the 6 tokens the Images API adds to every prompt."""
    count = 6
    for piece in re.findall(r"[A-Za-z']+|\d+|[^\w\s]| (?=\d)", text):
        if piece[0].isdigit():
            count += -(-len(piece) // 3)
        elif piece[0].isalpha():
            count += 1 + (len(piece) - 1) // 8
        else:
            count += 1
    return count


@pytest.mark.parametrize(
    "prompt",
    [
        "",
        "Pancakes.",
        "A rustic overhead photo of shakshuka in a cast-iron pan, soft morning light.",
        "Ingredients: 2 1/2 cups flour, 1 tsp. salt, 3 eggs, 250 ml milk; "
        "bake at 180 C for 35 min.",
        "Serves 4-6. Prep: 15 min; cook: 1 h 20 min. Oven 200°C / 400°F, gas 6.",
        "Worcestershire-glazed, slow-roasted short ribs with caramelized shallots, "
        "horseradish crème fraîche and charred broccolini, photographed at a 45-degree "
        "angle on a weathered walnut board. Don't show hands, text or logos!",
        "1, 2, 3 — go! (a.k.a. the 3-2-1 method: 3 hrs smoke, 2 hrs wrap, 1 hr sauce.)",
    ],
)
def test_prompt_estimate_is_never_below_a_rough_real_count(prompt: str) -> None:
    assert estimate_prompt_tokens(prompt) >= _rough_token_count(prompt)


def test_prompt_estimate_grows_with_length() -> None:
    assert estimate_prompt_tokens("") > 0
    short = estimate_prompt_tokens("A bowl of ramen.")
    assert estimate_prompt_tokens("A bowl of ramen. " * 20) > short
    assert estimate_prompt_tokens("é" * 100) >= 100  # multi-byte text counts by bytes
