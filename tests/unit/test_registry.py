"""ModelRegistry: the default model, config overrides, and case-insensitive lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiergate.config import Settings
from tiergate.engines.base import ModelSpec
from tiergate.engines.registry import (
    DEFAULT_MODELS,
    ModelRegistry,
    RegistryError,
    build_engines,
)
from tiergate.engines.upstream import UpstreamEngine
from tiergate.errors import ModelNotFound

DEFAULT_ID = "qwen2.5-coder-0.5b-instruct"


def test_the_default_model_is_registered_with_the_context_it_runs_with() -> None:
    spec = ModelRegistry(DEFAULT_MODELS).resolve(DEFAULT_ID)
    assert spec.owned_by == "Alibaba Cloud"
    assert spec.context_window == 8192
    assert spec.max_completion_tokens == spec.context_window
    assert spec.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert spec.source.startswith("packages:")


@pytest.mark.parametrize(
    "name", [DEFAULT_ID, "QWEN2.5-Coder-0.5B-Instruct", "qwen2.5-coder", "Qwen/Qwen2.5-Coder-0.5B-Instruct"]
)
def test_ids_and_aliases_resolve_in_any_case(name: str) -> None:
    registry = ModelRegistry(DEFAULT_MODELS)
    assert registry.resolve(name).id == DEFAULT_ID
    assert name in registry


def test_an_unknown_model_raises_model_not_found_with_a_404() -> None:
    with pytest.raises(ModelNotFound) as info:
        ModelRegistry(DEFAULT_MODELS).resolve("llama-3.3-70b-versatile")
    assert info.value.status == 404
    assert info.value.code == "model_not_found"
    assert "llama-3.3-70b-versatile" in info.value.message


def test_a_config_table_overrides_only_the_fields_it_names() -> None:
    settings = Settings(models=[{"id": "Qwen2.5-Coder-0.5B-Instruct", "context_window": 4096}])
    spec = ModelRegistry.from_settings(settings).resolve(DEFAULT_ID)
    assert spec.context_window == 4096
    assert spec.owned_by == "Alibaba Cloud"
    assert spec.id == DEFAULT_ID


def test_a_config_table_with_a_new_id_adds_a_model_with_slash_in_its_id() -> None:
    settings = Settings(
        models=[
            {"id": "my-org/Tiny-Chat", "source": "/srv/tiny.gguf", "aliases": ["tiny"], "options": {"a": 1}}
        ]
    )
    registry = ModelRegistry.from_settings(settings)
    assert len(registry) == len(DEFAULT_MODELS) + 1
    spec = registry.resolve("MY-ORG/tiny-chat")
    assert spec.aliases == ("tiny",)
    assert registry.resolve("TINY") is spec
    assert registry.resolve(DEFAULT_ID).id == DEFAULT_ID


def test_unknown_config_fields_are_rejected_instead_of_silently_ignored() -> None:
    with pytest.raises(RegistryError, match="context_windw"):
        ModelRegistry.with_overrides(DEFAULT_MODELS, [{"id": DEFAULT_ID, "context_windw": 10}])


def test_a_table_without_an_id_is_rejected() -> None:
    with pytest.raises(RegistryError):
        ModelRegistry.with_overrides(DEFAULT_MODELS, [{"source": "/x.gguf"}])


def test_one_name_for_two_models_is_rejected() -> None:
    with pytest.raises(RegistryError, match=r"(?i)tiny"):
        ModelRegistry([ModelSpec(id="a", aliases=("tiny",)), ModelSpec(id="b", aliases=("TINY",))])


def test_build_engines_loads_only_the_requested_models_and_skips_foreign_engines(tmp_path: Path) -> None:
    registry = ModelRegistry(
        [ModelSpec(id="remote", engine="foreign"), ModelSpec(id="other", engine="foreign")]
    )
    settings = Settings(data_dir=tmp_path, load_models=["REMOTE"])
    assert build_engines(settings, registry) == {}
    with pytest.raises(ModelNotFound):
        build_engines(Settings(data_dir=tmp_path, load_models=["missing"]), registry)


def test_upstream_flags_build_only_upstream_engines_and_no_local_weights(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, upstreams=["gw=http://127.0.0.1:9/v1@m"], parallel=5)
    engines = build_engines(settings, ModelRegistry.from_settings(settings))
    assert list(engines) == ["gw"]
    assert isinstance(engines["gw"], UpstreamEngine) and engines["gw"].slots == 5
