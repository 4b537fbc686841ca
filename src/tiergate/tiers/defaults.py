"""Organization-level limits per model and tier: built-in defaults plus operator config.

Each tier has its own counters and limits (GroqCloud: "flex = 10x the on-demand limits"):
    on_demand    the model's row (config, else DEFAULT_ON_DEMAND)
    flex         on_demand x flex_multiplier (10) unless configured
    performance  same numbers as on_demand unless configured (the seeds give none)
    batch        unlimited unless configured: GroqCloud's "batch jobs run independently of your
                 per-model synchronous limits", and batch lines only run on idle slots anyway

DEFAULT_ON_DEMAND is deliberately generous (1,000 RPM, 100K RPD, 1M TPM, 100M TPD, 100 audio
hours per hour, 1,000 per day): a self-hosted server is limited by its hardware first, and
normal use and the test suites must never trip a limit by accident. GroqCloud's own free-tier
table is GROQCLOUD_FREE_TIER, in the same config shape, for operators who want its numbers.

Config shape (the TOML `[limits]` table, or a dict), keyed by model id, "*" for every model:

    {"*": {"rpm": 1000},
     "llama-3.1-8b-instant": {"rpm": 30, "rpd": "14.4K", "tpm": "6K", "tpd": "500K",
                              "flex_multiplier": 10, "flex": {"rpm": 500}, "batch": {"tpd": "5M"}}}

Numbers may be written as in the spec's table ("14.4K", "1M"); "-" means no limit of that kind.
Each model's limits are the built-in defaults, overlaid by "*", overlaid by its own entry; a
tier table overrides only the units it names, on top of what that tier derives from on_demand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from tiergate.tiers.limits import LimitSet, Unit

TIERS = ("on_demand", "flex", "performance", "batch")
DEFAULT_FLEX_MULTIPLIER = 10.0

DEFAULT_ON_DEMAND = LimitSet(
    rpm=1_000, rpd=100_000, tpm=1_000_000, tpd=100_000_000, ash=360_000, asd=3_600_000
)

_SUFFIXES = {"k": 1_000, "m": 1_000_000, "b": 1_000_000_000}
_UNITS = {u.value for u in Unit}
_TIER_TABLES = {"flex", "performance", "batch"}


def parse_limit(value: Any) -> int | None:
    """A limit from config: 30, "14.4K", "1.2k", "1M", or "-" / "" / None for no limit."""
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "-", "none"}):
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a limit: {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip().lower().replace("_", "").replace(",", "")
        scale = _SUFFIXES.get(text[-1:], 1)
        try:
            number = float(text[:-1] if scale != 1 else text) * scale
        except ValueError:
            raise ValueError(f"not a limit: {value!r}") from None
    if number < 0:
        raise ValueError(f"limit must be >= 0, got {value!r}")
    return round(number)


@dataclass(frozen=True)
class ModelLimits:
    """One model's organization-level limits in every tier."""

    on_demand: LimitSet
    flex: LimitSet | None = None
    performance: LimitSet | None = None
    batch: LimitSet | None = None
    flex_multiplier: float = DEFAULT_FLEX_MULTIPLIER

    def for_tier(self, tier: str) -> LimitSet:
        if tier == "on_demand":
            return self.on_demand
        if tier == "flex":
            return self.flex if self.flex is not None else self.on_demand.scaled(self.flex_multiplier)
        if tier == "performance":
            return self.performance if self.performance is not None else self.on_demand
        if tier == "batch":
            return self.batch if self.batch is not None else LimitSet()
        raise ValueError(f"unknown tier {tier!r}; expected one of {', '.join(TIERS)}")


DEFAULT_MODEL_LIMITS = ModelLimits(on_demand=DEFAULT_ON_DEMAND)


class LimitTable:
    """Organization limits for every model; models not listed get the default row."""

    def __init__(
        self, models: Mapping[str, ModelLimits] | None = None, default: ModelLimits = DEFAULT_MODEL_LIMITS
    ) -> None:
        # Model ids are matched case-insensitively (the docs spell Llama Guard both ways).
        self._models = {name.lower(): limits for name, limits in (models or {}).items()}
        self._default = default

    def for_model(self, model: str) -> ModelLimits:
        return self._models.get(model.lower(), self._default)

    def limits(self, model: str, tier: str) -> LimitSet:
        """The organization LimitSet to pass to RateLimiter for (model, tier)."""
        return self.for_model(model).for_tier(tier)

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Mapping[str, Any]] | None,
        canonical: Callable[[str], str] = str,
    ) -> LimitTable:
        """Every model's limits are built-in defaults, overlaid by "*", overlaid by its own entry.

        `canonical` maps a model alias to its id, so `[limits."alias"]` limits the model it names.
        """
        config = dict(config or {})
        star = config.pop("*", {})
        default = _model_limits(star, "*")
        models = {
            canonical(model): _model_limits(_overlay(star, entry), model) for model, entry in config.items()
        }
        return cls(models, default)


def _overlay(base: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**base, **entry}
    for tier in _TIER_TABLES & set(base) & set(entry):
        merged[tier] = {**base[tier], **entry[tier]}
    return merged


def _limit_set(entry: Mapping[str, Any], base: LimitSet, where: str) -> LimitSet:
    unknown = set(entry) - _UNITS
    if unknown:
        raise ValueError(f"limits for {where}: unknown keys {sorted(unknown)}")
    return replace(base, **{unit: parse_limit(value) for unit, value in entry.items()})


def _model_limits(entry: Mapping[str, Any], model: str) -> ModelLimits:
    unknown = set(entry) - _UNITS - _TIER_TABLES - {"flex_multiplier"}
    if unknown:
        raise ValueError(f"limits for {model}: unknown keys {sorted(unknown)}")
    units = {k: v for k, v in entry.items() if k in _UNITS}
    derived = ModelLimits(
        _limit_set(units, DEFAULT_ON_DEMAND, model),
        flex_multiplier=float(entry.get("flex_multiplier", DEFAULT_FLEX_MULTIPLIER)),
    )
    # A tier table overrides only the units it names, on top of what that tier would derive.
    tiers = {
        tier: _limit_set(entry[tier], derived.for_tier(tier), f"{model}.{tier}")
        for tier in _TIER_TABLES
        if tier in entry
    }
    return replace(derived, **tiers)


# GroqCloud's per-model table (seed 003, "Rate Limits"), in config shape; "-" is no limit.
GROQCLOUD_FREE_TIER: dict[str, dict[str, Any]] = {
    model: dict(zip(("rpm", "rpd", "tpm", "tpd", "ash", "asd"), row.split(), strict=True))
    for model, row in {
        "allam-2-7b": "30 7K 6K 500K - -",
        "deepseek-r1-distill-llama-70b": "30 1K 6K 100K - -",
        "gemma2-9b-it": "30 14.4K 15K 500K - -",
        "groq/compound": "30 250 70K - - -",
        "groq/compound-mini": "30 250 70K - - -",
        "llama-3.1-8b-instant": "30 14.4K 6K 500K - -",
        "llama-3.3-70b-versatile": "30 1K 12K 100K - -",
        "meta-llama/llama-4-maverick-17b-128e-instruct": "30 1K 6K 500K - -",
        "meta-llama/llama-4-scout-17b-16e-instruct": "30 1K 30K 500K - -",
        "meta-llama/llama-guard-4-12b": "30 14.4K 15K 500K - -",
        "meta-llama/llama-prompt-guard-2-22m": "30 14.4K 15K 500K - -",
        "meta-llama/llama-prompt-guard-2-86m": "30 14.4K 15K 500K - -",
        "moonshotai/kimi-k2-instruct": "60 1K 10K 300K - -",
        "moonshotai/kimi-k2-instruct-0905": "60 1K 10K 300K - -",
        "openai/gpt-oss-120b": "30 1K 8K 200K - -",
        "openai/gpt-oss-20b": "30 1K 8K 200K - -",
        "playai-tts": "10 100 1.2K 3.6K - -",
        "playai-tts-arabic": "10 100 1.2K 3.6K - -",
        "qwen/qwen3-32b": "60 1K 6K 500K - -",
        "whisper-large-v3": "20 2K - - 7.2K 28.8K",
        "whisper-large-v3-turbo": "20 2K - - 7.2K 28.8K",
    }.items()
}
