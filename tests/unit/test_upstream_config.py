"""Upstream settings from TOML options and --upstream flags: parsing, keys from the environment, errors."""

from __future__ import annotations

import pytest

from tiergate.config import Settings
from tiergate.engines.registry import ModelRegistry, RegistryError
from tiergate.engines.upstream_config import UpstreamConfigError, cli_model_tables, pool_config


def _options(**upstream: object) -> dict[str, object]:
    return {"upstreams": [{"base_url": "http://gpu:8000/v1", **upstream}]}


def test_a_flag_becomes_an_upstream_model_with_the_upstream_model_name() -> None:
    [table] = cli_model_tables(["llama=http://gpu:8000/v1@meta-llama/Llama-3.1-8B"], None, None)
    assert table["id"] == "llama" and table["engine"] == "upstream"
    [upstream] = table["options"]["upstreams"]
    assert upstream["base_url"] == "http://gpu:8000/v1"
    assert upstream["model"] == "meta-llama/Llama-3.1-8B"


def test_repeating_an_id_adds_failover_upstreams_to_one_model() -> None:
    tables = cli_model_tables(["m=http://a:1/v1", "m=http://b:1/v1@x", "n=http://c:1/v1"], "vllm", 8)
    assert [t["id"] for t in tables] == ["m", "n"]
    upstreams = tables[0]["options"]["upstreams"]
    assert [u["base_url"] for u in upstreams] == ["http://a:1/v1", "http://b:1/v1"]
    assert all(u["kind"] == "vllm" and u["max_concurrency"] == 8 for u in upstreams)
    assert "model" not in upstreams[0]  # the upstream model defaults to the id
    assert pool_config("m", tables[0]["options"], env={}).upstreams[0].model == "m"


def test_an_at_sign_in_the_host_part_is_not_taken_for_a_model() -> None:
    [table] = cli_model_tables(["m=http://user@host:1/v1@model-a"], None, None)
    assert table["options"]["upstreams"][0]["base_url"] == "http://user@host:1/v1"
    assert table["options"]["upstreams"][0]["model"] == "model-a"


@pytest.mark.parametrize("value", ["no-equals", "=http://a/v1", "m=", "m=not-a-url"])
def test_a_malformed_flag_is_refused(value: str) -> None:
    with pytest.raises(UpstreamConfigError):
        cli_model_tables([value], None, None)


def test_the_key_comes_from_the_named_env_var_and_never_shows_in_a_repr() -> None:
    config = pool_config("m", _options(api_key_env="MY_KEY"), env={"MY_KEY": "sk-secret"})
    assert config.upstreams[0].api_key == "sk-secret"
    assert "sk-secret" not in repr(config)


def test_the_key_falls_back_to_the_per_model_then_the_shared_env_var() -> None:
    per_model = {"TIERGATE_UPSTREAM_API_KEY_LLAMA_70B": "k1", "TIERGATE_UPSTREAM_API_KEY": "k2"}
    assert pool_config("llama-70b", _options(), env=per_model).upstreams[0].api_key == "k1"
    assert pool_config("other", _options(), env=per_model).upstreams[0].api_key == "k2"
    assert pool_config("other", _options(), env={}).upstreams[0].api_key is None


def test_the_kind_is_guessed_from_hosted_apis_and_picks_the_token_counting() -> None:
    groq = pool_config("m", {"upstreams": [{"base_url": "https://api.groq.com/openai/v1"}]}, env={})
    assert groq.upstreams[0].kind == "groq" and groq.upstreams[0].count_tokens == "estimate"
    vllm = pool_config("m", _options(kind="vllm"), env={})
    assert vllm.upstreams[0].count_tokens == "tokenize" and vllm.upstreams[0].root == "http://gpu:8000"


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"upstreams": []},
        {"upstreams": [{"base_url": "ftp://x/v1"}]},
        _options(kind="tgi"),
        _options(colour="blue"),
        _options(max_concurrency=0),
        _options(weight="heavy"),
        {**_options(), "retries": 3},
        {**_options(), "max_attempts": 0},
    ],
)
def test_bad_options_are_refused_with_a_message(options: dict[str, object]) -> None:
    with pytest.raises(UpstreamConfigError):
        pool_config("m", options, env={})


def test_the_registry_refuses_to_start_with_a_bad_upstream_table() -> None:
    settings = Settings(models=[{"id": "x", "engine": "upstream", "options": {"upstreams": []}}])
    with pytest.raises(RegistryError, match=r"options\.upstreams"):
        ModelRegistry.from_settings(settings)


def test_upstream_flags_add_models_to_the_registry() -> None:
    registry = ModelRegistry.from_settings(Settings(upstreams=["gw=http://a:1/v1@m"], upstream_kind="vllm"))
    spec = registry.resolve("gw")
    assert spec.engine == "upstream"
    assert spec.options["upstreams"][0]["kind"] == "vllm"


def test_an_upstream_is_named_by_host_and_port_never_with_credentials_from_the_url() -> None:
    config = pool_config("m", {"upstreams": [{"base_url": "http://user:hunter2@gpu:8000/v1"}]}, env={})
    assert config.upstreams[0].name == "gpu:8000"
