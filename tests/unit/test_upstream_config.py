"""Upstream settings from TOML options and --upstream flags: parsing, keys from the environment, errors."""

from __future__ import annotations

import base64
from pathlib import Path

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


def test_upstream_reasoning_marks_that_flag_model_as_a_reasoning_model_and_no_other() -> None:
    flags = ["think=http://a:1/v1@qwen3", "plain=http://a:1/v1@llama"]
    registry = ModelRegistry.from_settings(Settings(upstreams=flags, upstream_reasoning=["think"]))
    assert registry.resolve("think").reasoning
    assert not registry.resolve("plain").reasoning


def test_upstream_reasoning_for_an_id_without_an_upstream_flag_is_refused_at_start() -> None:
    settings = Settings(upstreams=["gw=http://a:1/v1"], upstream_reasoning=["typo"])
    with pytest.raises(RegistryError, match="--upstream-reasoning typo"):
        ModelRegistry.from_settings(settings)


def test_an_upstream_is_named_by_host_and_port_never_with_credentials_from_the_url() -> None:
    config = pool_config("m", {"upstreams": [{"base_url": "http://user:hunter2@gpu:8000/v1"}]}, env={})
    assert config.upstreams[0].name == "gpu:8000"


def test_credentials_in_the_base_url_become_basic_auth_and_leave_the_url() -> None:
    env = {"TIERGATE_UPSTREAM_API_KEY": "shared-key-for-other-upstreams"}
    [upstream] = pool_config("m", _options(base_url="http://ann:p%40ss@gpu:8000/v1"), env=env).upstreams
    assert upstream.base_url == "http://gpu:8000/v1" and upstream.root == "http://gpu:8000"
    # The URL's own credentials win over the shared key: one Authorization header, basic auth.
    assert upstream.authorization == "Basic " + base64.b64encode(b"ann:p@ss").decode()
    assert upstream.api_key is None
    assert "p%40ss" not in repr(upstream) and "p@ss" not in repr(upstream)


def test_credentials_in_the_url_and_an_explicit_key_env_are_refused_at_start() -> None:
    with pytest.raises(UpstreamConfigError, match="one Authorization header"):
        pool_config("m", _options(base_url="http://ann:pw@gpu/v1", api_key_env="K"), env={"K": "sk"})


def test_a_key_is_trimmed_and_one_with_a_control_character_is_refused() -> None:
    config = pool_config("m", _options(api_key_env="K"), env={"K": "sk-abc\n"})
    assert config.upstreams[0].authorization == "Bearer sk-abc"
    with pytest.raises(UpstreamConfigError, match="control character"):
        pool_config("m", _options(api_key_env="K"), env={"K": "sk-abc\nx-evil: 1"})


def test_a_hash_suffix_on_the_flag_names_each_upstreams_key_env() -> None:
    [table] = cli_model_tables(["m=http://a:1/v1@x#KEY_A", "m=http://b:1/v1#KEY_B"], None, None)
    env = {"KEY_A": "ka", "KEY_B": "kb", "TIERGATE_UPSTREAM_API_KEY_M": "km"}
    upstreams = pool_config("m", table["options"], env=env).upstreams
    assert [(u.base_url, u.model, u.api_key) for u in upstreams] == [
        ("http://a:1/v1", "x", "ka"),
        ("http://b:1/v1", "m", "kb"),
    ]
    with pytest.raises(UpstreamConfigError, match="env var name"):
        cli_model_tables(["m=http://a:1/v1#not-a-name"], None, None)


def test_a_tokenizer_must_be_a_file_and_becomes_the_count_for_servers_without_tokenize(
    tmp_path: Path,
) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    config = pool_config("m", {**_options(), "tokenizer": str(gguf)}, env={})
    assert config.tokenizer == str(gguf) and config.upstreams[0].count_tokens == "tokenizer"
    vllm = pool_config("m", {**_options(kind="vllm"), "tokenizer": str(gguf)}, env={})
    assert vllm.upstreams[0].count_tokens == "tokenize"  # /tokenize first, the tokenizer if it fails
    with pytest.raises(UpstreamConfigError, match="tokenizer"):
        pool_config("m", {**_options(), "tokenizer": str(tmp_path / "missing.gguf")}, env={})
    with pytest.raises(UpstreamConfigError, match=r"needs options\.tokenizer"):
        pool_config("m", _options(count_tokens="tokenizer"), env={})


@pytest.mark.parametrize("base_url", ["http://gpu:port/v1", "http://[::1/v1", "http://:80/v1"])
def test_a_base_url_that_does_not_parse_is_refused_not_a_crash(base_url: str) -> None:
    with pytest.raises(UpstreamConfigError, match="base_url"):
        pool_config("m", _options(base_url=base_url), env={})


def test_a_tokenizer_that_is_not_a_gguf_is_refused_at_start(tmp_path: Path) -> None:
    text = tmp_path / "tokenizer.json"
    text.write_text("{}")
    with pytest.raises(UpstreamConfigError, match="GGUF"):
        pool_config("m", {**_options(), "tokenizer": str(text)}, env={})
