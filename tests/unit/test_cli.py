"""The `tiergate` command in-process: keys, projects, limits, and the first key `serve` prints."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner, Result

import tiergate.app
from tiergate import cli
from tiergate.auth import Authenticator, Principal
from tiergate.batches.client import endpoint_of
from tiergate.clock import SystemClock
from tiergate.config import Settings
from tiergate.errors import AuthenticationFailed
from tiergate.store import open_store


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def run(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli.app, [*args, "--data-dir", str(data_dir)], env=env)


def ok(data_dir: Path, *args: str) -> str:
    result = run(data_dir, *args)
    assert result.exit_code == 0, f"{result.stdout}\n{result.stderr}\n{result.exception!r}"
    return result.stdout


def authenticate(data_dir: Path, secret: str) -> Principal:
    """Authenticate as a fresh server on this data dir would (no cache carried over)."""
    store = open_store(Settings(data_dir=data_dir).resolved_database_url)
    try:
        return asyncio.run(Authenticator(store.sessions, SystemClock(), 0.5).authenticate(f"Bearer {secret}"))
    finally:
        store.close()


def assert_user_error(result: Result, message: str, exit_code: int = 1) -> None:
    assert result.exit_code == exit_code, result.stdout
    assert message in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_keys_create_prints_a_key_on_its_last_line_that_authenticates(data_dir: Path) -> None:
    secret = ok(data_dir, "keys", "create").strip().splitlines()[-1]
    assert secret.startswith("gsk_")
    assert authenticate(data_dir, secret).project_name == "default"


def test_keys_create_in_a_project(data_dir: Path) -> None:
    ok(data_dir, "projects", "create", "myapp-prod", "--performance")
    secret = ok(data_dir, "keys", "create", "--project", "myapp-prod", "--name", "ci").splitlines()[-1]
    principal = authenticate(data_dir, secret)
    assert (principal.project_name, principal.performance) == ("myapp-prod", True)


def test_keys_list_shows_ids_projects_and_prefixes_but_never_the_secret(data_dir: Path) -> None:
    ok(data_dir, "projects", "create", "other")
    first = ok(data_dir, "keys", "create", "--name", "laptop").splitlines()[-1]
    second = ok(data_dir, "keys", "create", "--project", "other").splitlines()[-1]
    listing = ok(data_dir, "keys", "list")
    assert f"{first[:6]}…{first[-4:]}" in listing and "laptop" in listing
    assert first not in listing and second not in listing
    only_other = ok(data_dir, "keys", "list", "--project", "other")
    assert f"{second[:6]}…{second[-4:]}" in only_other
    assert f"{first[:6]}…{first[-4:]}" not in only_other


def test_keys_revoke_stops_the_key_from_authenticating(data_dir: Path) -> None:
    created = ok(data_dir, "keys", "create").splitlines()
    secret = created[-1]
    key_id = next(word for word in created[0].split() if word.startswith("key_"))
    assert key_id in ok(data_dir, "keys", "list")
    assert key_id in ok(data_dir, "keys", "revoke", key_id)
    with pytest.raises(AuthenticationFailed):
        authenticate(data_dir, secret)
    row = next(line for line in ok(data_dir, "keys", "list").splitlines() if key_id in line)
    # created and revoked both show a UTC time (the key prefix may hold a "Z" too, so match times)
    assert len(re.findall(r"\d{2}:\d{2}:\d{2}Z", row)) == 2


def test_unknown_key_or_project_is_a_one_line_error_not_a_traceback(data_dir: Path) -> None:
    assert_user_error(run(data_dir, "keys", "revoke", "key_nope"), "API key `key_nope` does not exist")
    assert_user_error(run(data_dir, "keys", "create", "--project", "ghost"), "Project `ghost` does not exist")
    assert_user_error(run(data_dir, "keys", "list", "--project", "ghost"), "Project `ghost` does not exist")
    assert_user_error(run(data_dir, "projects", "update", "ghost", "--performance"), "`ghost` does not exist")


def test_projects_create_update_and_list(data_dir: Path) -> None:
    ok(data_dir, "projects", "create", "myapp-dev")
    rows = {
        line.split()[1]: line for line in ok(data_dir, "projects", "list").splitlines() if "project_" in line
    }
    assert set(rows) == {"default", "myapp-dev"}
    assert " no " in rows["myapp-dev"]
    ok(data_dir, "projects", "update", "myapp-dev", "--performance")
    listing = ok(data_dir, "projects", "list")
    assert " yes " in next(line for line in listing.splitlines() if "myapp-dev" in line)
    ok(data_dir, "projects", "update", "myapp-dev", "--no-performance")
    listing = ok(data_dir, "projects", "list")
    assert " no " in next(line for line in listing.splitlines() if "myapp-dev" in line)
    assert_user_error(run(data_dir, "projects", "create", "myapp-dev"), "already exists")


def test_limits_set_and_show_with_the_project_ceiling(data_dir: Path) -> None:
    model = "llama-3.1-8b-instant"
    ok(data_dir, "projects", "create", "myapp-prod")
    ok(data_dir, "limits", "set", "--org", "--model", model, "--rpm", "100", "--tpm", "6000")
    ok(data_dir, "limits", "set", "--project", "myapp-prod", "--model", model, "--rpm", "80")
    ok(data_dir, "limits", "set", "--org", "--model", model, "--tier", "flex", "--rpm", "1000")
    refused = run(data_dir, "limits", "set", "--project", "myapp-prod", "--model", model, "--rpm", "120")
    assert_user_error(refused, "above the organization's rpm limit 100")
    shown = [line.split() for line in ok(data_dir, "limits", "show").splitlines() if model in line]
    cells = [[cell for cell in row if cell not in "│┃|"] for row in shown]
    assert [row[:5] for row in cells] == [
        ["org", model, "flex", "1000", "-"],
        ["org", model, "on_demand", "100", "-"],
        ["project:myapp-prod", model, "on_demand", "80", "-"],
    ]
    assert cells[1][5] == "6000"


@pytest.mark.parametrize("scope", [[], ["--org", "--project", "myapp-prod"]], ids=["neither", "both"])
def test_limits_set_needs_exactly_one_scope(data_dir: Path, scope: list[str]) -> None:
    result = run(data_dir, "limits", "set", *scope, "--model", "m", "--rpm", "1")
    assert result.exit_code == 2
    assert "exactly one of --org or --project" in result.stderr


def test_limits_set_refuses_an_unknown_tier_and_no_units(data_dir: Path) -> None:
    assert (
        run(data_dir, "limits", "set", "--org", "--model", "m", "--tier", "batch", "--rpm", "1").exit_code
        == 2
    )
    assert run(data_dir, "limits", "set", "--org", "--model", "m").exit_code == 2


def test_database_url_from_the_environment_wins_over_the_data_dir(tmp_path: Path, data_dir: Path) -> None:
    elsewhere = tmp_path / "elsewhere.db"
    env = {"TIERGATE_DATABASE_URL": f"sqlite:///{elsewhere}"}
    result = run(data_dir, "projects", "create", "remote", env=env)
    assert result.exit_code == 0, result.stderr
    assert elsewhere.exists()
    assert "remote" in run(data_dir, "projects", "list", env=env).stdout
    assert "remote" not in ok(data_dir, "projects", "list")


class FakeUvicorn:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def run(self, app: Any, **kwargs: Any) -> None:
        self.calls.append((app, kwargs))


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> FakeUvicorn:
    fake = FakeUvicorn()
    # `serve` imports uvicorn and the app lazily (start-up cost), so patch them where they live.
    monkeypatch.setattr(uvicorn, "run", fake.run)
    monkeypatch.setattr(tiergate.app, "create_app", lambda settings: ("app", settings))
    return fake


def test_serve_prints_a_first_key_once_then_runs_uvicorn(data_dir: Path, served: FakeUvicorn) -> None:
    first = ok(data_dir, "serve", "--port", "9123", "--parallel", "3", "--fifo", "--log-level", "warning")
    line = next(line for line in first.splitlines() if "Your API key:" in line)
    secret = line.split()[-1]
    assert f"export GROQ_API_KEY={secret}" in first
    assert authenticate(data_dir, secret).project_name == "default"
    (app, settings), kwargs = served.calls[0]
    assert app == "app"
    assert (settings.port, settings.parallel, settings.fifo, settings.data_dir) == (9123, 3, True, data_dir)
    assert kwargs == {
        "host": "127.0.0.1",
        "port": 9123,
        "loop": "uvloop",
        "http": "httptools",
        "log_level": "warning",
    }
    again = ok(data_dir, "serve")
    assert "gsk_" not in again
    assert len(served.calls) == 2


def test_serve_reads_the_config_file_and_flags_override_it(
    tmp_path: Path, data_dir: Path, served: FakeUvicorn
) -> None:
    config = tmp_path / "tiergate.toml"
    config.write_text('port = 9001\nparallel = 4\nhost = "0.0.0.0"\n')
    ok(data_dir, "serve", "--config", str(config), "--port", "9002")
    (_app, settings), kwargs = served.calls[0]
    assert (settings.port, settings.parallel, settings.host) == (9002, 4, "0.0.0.0")
    assert (kwargs["host"], kwargs["port"]) == ("0.0.0.0", 9002)


def test_an_unreachable_database_is_a_one_line_error_without_the_password(data_dir: Path) -> None:
    url = "postgresql+psycopg://user:hunter2@127.0.0.1:1/nothing?connect_timeout=2"
    result = run(data_dir, "projects", "list", "--database-url", url)
    assert_user_error(result, "cannot open the store at postgresql+psycopg://user:***@127.0.0.1:1/nothing")
    assert "hunter2" not in result.stderr


def test_batch_submit_takes_the_endpoint_from_the_first_line(tmp_path: Path) -> None:
    audio = tmp_path / "audio.jsonl"
    audio.write_text(
        '{"custom_id": "a", "method": "POST", "url": "/v1/audio/translations", "body": {}}\n{}\n'
    )
    chat = tmp_path / "chat.jsonl"
    chat.write_text('{"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n')
    broken = tmp_path / "broken.jsonl"
    broken.write_text("not json\n")
    assert endpoint_of(audio) == "/v1/audio/translations"
    assert endpoint_of(chat) == "/v1/chat/completions"
    assert endpoint_of(broken) == "/v1/chat/completions"  # the server's validation names the problem
