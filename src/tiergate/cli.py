"""The `tiergate` command: serve the API and manage projects, API keys and rate limits.

Management commands write straight to the store the server reads (SQLite file in the data
dir, or PostgreSQL by URL); a running server sees the change within Settings.cache_ttl.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from tiergate.batches.client import BatchClient, BatchClientError, endpoint_of, result_paths
from tiergate.config import Settings
from tiergate.errors import APIError
from tiergate.store import Store, limits_repo, open_store, tenancy

app = typer.Typer(
    help="Self-hosted GroqCloud-compatible LLM API with real service tiers.",
    no_args_is_help=True,
    # Locals in a traceback could include a freshly made API key.
    pretty_exceptions_show_locals=False,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
projects_app = typer.Typer(help="Create, update and list projects.", no_args_is_help=True)
limits_app = typer.Typer(help="Set and show per-model rate limits.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(projects_app, name="projects")
app.add_typer(limits_app, name="limits")


class Tier(StrEnum):
    on_demand = "on_demand"
    flex = "flex"
    performance = "performance"


DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="TIERGATE_DATA_DIR",
        help="Folder for the SQLite store and files [default: ./.tiergate].",
        show_default=False,
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="TIERGATE_DATABASE_URL",
        help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db [default: SQLite in the data dir].",
    ),
]
ProjectName = Annotated[str, typer.Option("--project", help="Project name.")]
LimitValue = Annotated[int | None, typer.Option(min=0)]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(1)


@contextmanager
def _store(data_dir: Path | None, database_url: str | None) -> Iterator[Store]:
    """The migrated store for a management command; store refusals become one-line errors."""
    settings = Settings.load(None, data_dir=data_dir, database_url=database_url)
    store = _open_store(settings.resolved_database_url)
    try:
        yield store
    except APIError as exc:
        raise _fail(exc.message) from None
    finally:
        store.close()


def _open_store(url: str) -> Store:
    try:
        return open_store(url)
    except OperationalError as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        raise _fail(f"cannot open the store at {shown}: {exc.orig}") from None


def _console() -> Console:
    # Piped output (scripts, tests) gets full-width rows instead of wrapped ids.
    return Console(width=None if sys.stdout.isatty() else 250)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _print_first_key(store: Store, settings: Settings) -> None:
    """On a store without keys, make one so the server is usable right away, and show it once."""
    if tenancy.count_keys(store.sessions) > 0:
        return
    _key, secret = tenancy.create_key(store.sessions, tenancy.DEFAULT_PROJECT_NAME, name="first key")
    typer.echo("Created the first API key (project 'default'). It is shown only this once:")
    typer.echo(f"  Your API key: {secret}")
    typer.echo(f"  export GROQ_API_KEY={secret}")
    typer.echo(f"  export GROQ_BASE_URL=http://{settings.host}:{settings.port}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8000].")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config: Annotated[
        Path | None, typer.Option("--config", exists=True, dir_okay=False, help="TOML file.")
    ] = None,
    parallel: Annotated[int | None, typer.Option(help="Concurrent generation slots per model.")] = None,
    redis_url: Annotated[
        str | None, typer.Option("--redis-url", envvar="TIERGATE_REDIS_URL", help="Share limits via Redis.")
    ] = None,
    fifo: Annotated[bool | None, typer.Option("--fifo", help="Plain FIFO scheduling, no tiers.")] = None,
    threads: Annotated[int | None, typer.Option(help="llama.cpp threads per decode (0 = auto).")] = None,
    max_body_bytes: Annotated[int | None, typer.Option(help="Largest request body accepted.")] = None,
    reserved_performance_slots: Annotated[
        int | None, typer.Option(help="Slots kept free for the performance tier.")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="Uvicorn log level [default: info].")] = None,
    upstream: Annotated[
        list[str] | None,
        typer.Option(
            "--upstream",
            help="Gateway mode: serve model ID from an OpenAI-compatible server, "
            "ID=BASE_URL\\[@UPSTREAM_MODEL]\\[#KEY_ENV] (BASE_URL ends in /v1; repeat an ID for "
            "failover). Key: env KEY_ENV, else TIERGATE_UPSTREAM_API_KEY_<ID>, "
            "else TIERGATE_UPSTREAM_API_KEY.",
        ),
    ] = None,
    upstream_kind: Annotated[
        str | None,
        typer.Option(help="Kind of the --upstream servers: vllm, sglang, openai, groq, llama-server, ..."),
    ] = None,
    upstream_reasoning: Annotated[
        list[str] | None,
        typer.Option(
            "--upstream-reasoning",
            help="Mark the --upstream model ID as a reasoning model (reasoning_format, "
            "reasoning_effort accepted); repeatable.",
        ),
    ] = None,
) -> None:
    """Run the API server (migrates the store; prints a first API key when there is none)."""
    settings = Settings.load(
        config,
        host=host,
        port=port,
        data_dir=data_dir,
        database_url=database_url,
        parallel=parallel,
        redis_url=redis_url,
        fifo=fifo,
        threads=threads,
        max_body_bytes=max_body_bytes,
        reserved_performance_slots=reserved_performance_slots,
        log_level=log_level,
        upstreams=upstream or None,
        upstream_kind=upstream_kind,
        upstream_reasoning=upstream_reasoning or None,
    )
    # Imported here, not at the top: the server stack (llama.cpp, FastAPI) costs ~1.5 s to import,
    # which every `keys`/`projects`/`limits` command would otherwise pay.
    import uvicorn

    from tiergate.app import create_app
    from tiergate.engines.registry import ModelRegistry, RegistryError

    try:
        ModelRegistry.from_settings(settings)  # a bad --upstream or [[models]] table: one line, exit 1
    except RegistryError as exc:
        raise _fail(str(exc)) from None
    store = _open_store(settings.resolved_database_url)
    try:
        _print_first_key(store, settings)
    finally:
        store.close()

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level,
    )


@keys_app.command("create")
def keys_create(
    project: ProjectName = tenancy.DEFAULT_PROJECT_NAME,
    name: Annotated[str | None, typer.Option("--name", help="A label to tell keys apart.")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create an API key; the key itself is the last line printed (shown only once)."""
    with _store(data_dir, database_url) as store:
        key, secret = tenancy.create_key(store.sessions, project, name)
    typer.echo(f"Created {key.id} in project '{project}'. Store the key now; it is not shown again:")
    typer.echo(secret)


@keys_app.command("list")
def keys_list(
    project: Annotated[str | None, typer.Option("--project", help="Only this project's keys.")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List API keys (never the secrets)."""
    with _store(data_dir, database_url) as store:
        keys = tenancy.list_keys(store.sessions, project)
    table = Table("id", "project", "name", "prefix", "created", "revoked")
    for key in keys:
        table.add_row(
            key.id, key.project_name, key.name or "", key.prefix, _when(key.created_at), _when(key.revoked_at)
        )
    _console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...), as `keys list` shows it.")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke an API key; a running server rejects it within a second."""
    with _store(data_dir, database_url) as store:
        key = tenancy.revoke_key(store.sessions, key_id)
    typer.echo(f"Revoked {key.id} ({key.prefix}).")


@projects_app.command("create")
def projects_create(
    name: Annotated[str, typer.Argument(help="Project name, e.g. myapp-prod.")],
    performance: Annotated[
        bool, typer.Option("--performance", help="Entitle it to the performance tier.")
    ] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a project."""
    with _store(data_dir, database_url) as store:
        project = tenancy.create_project(store.sessions, name, performance)
    typer.echo(
        f"Created project '{project.name}' ({project.id}), performance tier: {_yes_no(project.performance)}."
    )


@projects_app.command("update")
def projects_update(
    name: Annotated[str, typer.Argument(help="Project name.")],
    performance: Annotated[
        bool, typer.Option("--performance/--no-performance", help="Grant or withdraw the performance tier.")
    ],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Change a project's performance-tier entitlement."""
    with _store(data_dir, database_url) as store:
        project = tenancy.update_project(store.sessions, name, performance=performance)
    typer.echo(f"Updated project '{project.name}', performance tier: {_yes_no(project.performance)}.")


@projects_app.command("list")
def projects_list(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """List projects."""
    with _store(data_dir, database_url) as store:
        projects = tenancy.list_projects(store.sessions)
    table = Table("name", "id", "performance", "created")
    for project in projects:
        table.add_row(project.name, project.id, _yes_no(project.performance), _when(project.created_at))
    _console().print(table)


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


@limits_app.command("set")
def limits_set(
    model: Annotated[str, typer.Option("--model", help="Model id the limits apply to.")],
    org: Annotated[bool, typer.Option("--org", help="Set the organization's limits.")] = False,
    project: Annotated[str | None, typer.Option("--project", help="Set this project's limits.")] = None,
    tier: Annotated[Tier, typer.Option("--tier", help="Service tier.")] = Tier.on_demand,
    rpm: LimitValue = None,
    rpd: LimitValue = None,
    tpm: LimitValue = None,
    tpd: LimitValue = None,
    ash: LimitValue = None,
    asd: LimitValue = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Set rate limits for a model; project limits may not exceed the organization's."""
    if org == (project is not None):
        raise typer.BadParameter("give exactly one of --org or --project NAME")
    if all(value is None for value in (rpm, rpd, tpm, tpd, ash, asd)):
        raise typer.BadParameter("give at least one of --rpm --rpd --tpm --tpd --ash --asd")
    with _store(data_dir, database_url) as store:
        row = limits_repo.set_limit(
            store.sessions,
            model,
            project=project,
            tier=tier.value,
            rpm=rpm,
            rpd=rpd,
            tpm=tpm,
            tpd=tpd,
            ash=ash,
            asd=asd,
        )
    scope = "organization" if project is None else f"project '{project}'"
    units = ", ".join(f"{unit}={value}" for unit, value in row.units().items() if value is not None)
    typer.echo(f"Limits for {model} ({row.tier}) in {scope}: {units}.")


@limits_app.command("show")
def limits_show(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Show every rate-limit override (units left blank fall back to the model's defaults)."""
    with _store(data_dir, database_url) as store:
        records = limits_repo.list_limits(store.sessions)
    table = Table("scope", "model", "tier", "rpm", "rpd", "tpm", "tpd", "ash", "asd", "updated")
    for record in records:
        scope = "org" if record.project_name is None else f"project:{record.project_name}"
        units = (record.rpm, record.rpd, record.tpm, record.tpd, record.ash, record.asd)
        table.add_row(
            scope,
            record.model,
            record.tier,
            *("-" if value is None else str(value) for value in units),
            _when(record.updated_at),
        )
    _console().print(table)


# -- batch: submit work to any tiergate (or GroqCloud) server over HTTP --------------------------------

batch_app = typer.Typer(help="Submit and follow batch jobs over the API.", no_args_is_help=True)
app.add_typer(batch_app, name="batch")


@batch_app.command("submit")
def batch_submit(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Batch input (.jsonl).")],
    window: Annotated[str, typer.Option("--window", help="Completion window, 24h to 7d.")] = "24h",
    wait: Annotated[bool, typer.Option("--wait", help="Follow progress, then download the results.")] = False,
    base_url: Annotated[
        str, typer.Option("--base-url", envvar="TIERGATE_BASE_URL", help="Server URL.")
    ] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar=["TIERGATE_API_KEY", "GROQ_API_KEY"], help="API key.")
    ] = None,
) -> None:
    """Upload FILE, create a batch, and with --wait show a live progress bar and download the results."""
    if not api_key:
        raise _fail("an API key is required: --api-key or env TIERGATE_API_KEY")
    client = BatchClient(base_url, api_key)
    try:
        uploaded = client.upload(file)
        batch = client.create(uploaded["id"], window, endpoint_of(file))
        typer.echo(f"Batch {batch['id']} created from {uploaded['id']} ({batch['status']}).")
        if not wait:
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=_console()) as progress:
            bar = progress.add_task(batch["status"], total=None)

            def show(current: dict[str, Any]) -> None:
                counts = current.get("request_counts") or {}
                done = counts.get("completed", 0) + counts.get("failed", 0)
                progress.update(
                    bar, description=current["status"], completed=done, total=counts.get("total") or None
                )

            batch = client.wait(batch["id"], show)
        output_path, errors_path = result_paths(file)
        for file_id, target in (
            (batch.get("output_file_id"), output_path),
            (batch.get("error_file_id"), errors_path),
        ):
            if file_id:
                typer.echo(f"Wrote {client.download(file_id, target)}")
        counts = batch.get("request_counts") or {}
        typer.echo(
            f"Batch {batch['id']} {batch['status']}: {counts.get('completed', 0)} completed, "
            f"{counts.get('failed', 0)} failed of {counts.get('total', 0)}."
        )
        if batch["status"] == "failed":
            for error in (batch.get("errors") or {}).get("data", []):
                typer.echo(
                    f"  line {error.get('line')}: {error.get('code')}: {error.get('message')}", err=True
                )
            raise typer.Exit(1)
    except BatchClientError as exc:
        raise _fail(str(exc)) from None
    except httpx.TransportError as exc:
        raise _fail(f"could not reach the server at {base_url}: {type(exc).__name__}") from None
    finally:
        client.close()
