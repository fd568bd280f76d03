"""The ``hotdesk`` command.

Exit codes: 0 success, 1 a refusal or bad configuration, 2 a feature or target that is
not available (yet) or not reachable.
"""

import asyncio
import importlib
import logging
import os
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import msgspec
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from hotdesk_contracts.directory import Config
from hotdesk_runtime import pins
from hotdesk_runtime.config import (
    ConfigError,
    LoadedConfig,
    Problem,
    check_data,
    check_file,
    config_path,
    hash_secret,
    load_config,
)
from hotdesk_runtime.demo import demo_config
from hotdesk_runtime.logging import setup_logging

from .runner import SERVICES, UnknownService, run_loop, run_service

app = typer.Typer(
    name="hotdesk",
    help="Hot desking for SIP desk phones.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
prompts_app = typer.Typer(help="The IVR prompt sets in the object store.", no_args_is_help=True)
app.add_typer(prompts_app, name="prompts")

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    str | None,
    typer.Option("--config", "-c", help="TOML config file (default: $HOTDESK_CONFIG)."),
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", help="Admin API token (default: $HOTDESK_TOKEN).", show_default=False),
]

NOT_AVAILABLE = 2


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def print_problems(problems: list[Problem], *, to: Console = console) -> None:
    for problem in problems:
        style = "red" if problem.severity == "error" else "yellow"
        where = problem.where()
        head = f"{problem.key or 'config'}" + (f" ({where})" if where else "")
        to.print(f"[{style}]{problem.severity}[/] {escape(head)}: {escape(problem.message)}")


def _load(config: str | None) -> LoadedConfig:
    """The config for commands that need one; the demo's settings without a file."""
    try:
        if config_path(config) is None:
            return load_config(None, default=demo_config(hash_secret("unused")))
        return load_config(config)
    except ConfigError as exc:
        print_problems(exc.problems, to=err_console)
        fail(f"the configuration{' in ' + exc.source if exc.source else ''} has errors")


def _load_for_nats(config: str | None) -> Config:
    """Enough config to reach NATS, even from a file that has errors elsewhere.

    ``hotdesk reload`` must be able to tell the owner about a broken file: the owner
    replies with its problems.
    """
    path = config_path(config)
    if path is None:
        return _load(config).config
    try:
        return load_config(path).config
    except ConfigError:
        pass
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        checked, _ = check_data({"nats": data.get("nats", {})})
    except (OSError, tomllib.TOMLDecodeError):
        checked = None
    return checked if checked is not None else _load(config).config


def _setup_cli_logging(level: str = "WARNING") -> None:
    setup_logging("cli", level=level, fmt="text")


# --- up / run -------------------------------------------------------------------------
@app.command()
def up(
    config: ConfigOption = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="HOTDESK_DATA_DIR",
            help="Where state lives (NATS store, admin hash). [default: var]",
        ),
    ] = None,
) -> None:
    """Run everything on this machine: embedded NATS, every service, the demo without a config."""
    from .up import plan, run_up

    loaded = None
    try:
        loaded = plan(config, data_dir or Path("var"), data_dir is not None)
    except ConfigError as exc:
        print_problems(exc.problems, to=err_console)
        fail("the configuration has errors; nothing was started")
    settings = loaded.loaded.config.telemetry
    setup_logging("supervisor", level=settings.log_level, fmt=settings.log_format)
    from hotdesk_runtime.nats import NatsError

    try:
        code = run_up(loaded, console)
    except NatsError as exc:
        fail(str(exc))
    raise typer.Exit(code)


@app.command()
def run(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}.")],
    config: ConfigOption = None,
    own_directory: Annotated[
        bool,
        typer.Option(
            "--own-directory",
            envvar="HOTDESK_OWN_DIRECTORY",
            help="Publish this config file's directory and answer reloads (without `up`).",
        ),
    ] = False,
    resolved_config: Annotated[Path | None, typer.Option("--resolved-config", hidden=True)] = None,
) -> None:
    """Run one service (what ``hotdesk up`` starts for each, and what a container runs)."""
    if service not in SERVICES:
        fail(str(UnknownService(service)))
    path = config_path(config)
    if resolved_config is not None:
        loaded_config = msgspec.json.decode(resolved_config.read_bytes(), type=Config)
    else:
        if path is None:
            fail("no config file: pass --config or set HOTDESK_CONFIG")
        loaded_config = _load(config).config
    settings = loaded_config.telemetry
    setup_logging(service, level=settings.log_level, fmt=settings.log_format)
    from hotdesk_runtime.telemetry import setup_telemetry

    telemetry = setup_telemetry(service, settings)
    try:
        code = run_loop(
            run_service(
                service,
                loaded_config,
                path,
                metrics_app=telemetry.metrics_app,
                own_directory=own_directory,
            )
        )
    finally:
        telemetry.shutdown()
    raise typer.Exit(code)


# --- configuration --------------------------------------------------------------------
@app.command("check-config")
def check_config(config: ConfigOption = None) -> None:
    """Check a config file: every problem with its key, line and why; exit 1 on errors."""
    path = config_path(config)
    if path is None:
        demo = demo_config(hash_secret("unused"))
        checked, problems = check_data(msgspec.to_builtins(demo))
        source = "the built-in demo configuration"
    else:
        checked, problems = check_file(path)
        source = str(path)
    print_problems(problems)
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    if errors or checked is None:
        console.print(f"[red]{source}: {errors} error(s), {warnings} warning(s)[/]")
        raise typer.Exit(1)
    console.print(f"[green]{source}: OK[/] ({warnings} warning(s))")


@app.command()
def reload(config: ConfigOption = None) -> None:
    """Ask the running system to re-read its config file (published only if valid)."""
    from hotdesk_runtime.directory import request_reload
    from hotdesk_runtime.nats import NatsError, connect

    _setup_cli_logging()
    settings = _load_for_nats(config)

    async def go() -> Any:
        nc, _ = await connect(settings, name="hotdesk-cli", initial_attempts=1)
        try:
            return await request_reload(nc)
        finally:
            await nc.close()

    try:
        reply = asyncio.run(go())
    except NatsError as exc:
        fail(f"{exc} (is hotdesk running?)", NOT_AVAILABLE)
    except Exception as exc:
        fail(
            f"nobody answered the reload request ({type(exc).__name__}): is `hotdesk up` "
            "or the config owner running?",
            NOT_AVAILABLE,
        )
    print_problems([p.problem() for p in reply.problems])
    if not reply.ok:
        fail(reply.error or "reload refused: fix the errors above; the running directory stays")
    console.print(f"[green]directory reloaded[/] (revision {reply.revision})")
    if reply.removed_desks:
        console.print(f"removed desks logged out: {', '.join(reply.removed_desks)}")


@app.command("hash-pin")
def hash_pin(
    password: Annotated[
        bool, typer.Option("--password", help="Hash an admin password instead of a PIN.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Read a PIN (or password) without echo and print its hash for the config.

    A PIN is peppered with ``pins.pepper`` (from the config file or
    ``HOTDESK_PINS__PEPPER``) when one is set, then hashed with argon2id's PIN profile;
    an admin password gets argon2id's strong defaults.
    """
    what = "password" if password else "PIN"
    pepper = "" if password else _pin_pepper(config)
    try:
        secret = typer.prompt(what, hide_input=True, confirmation_prompt=True, err=True)
    except typer.Abort:
        fail(f"no {what} given")
    if not password and not (secret.isdigit() and 4 <= len(secret) <= 12):
        fail("a PIN is 4 to 12 digits")
    if password and len(secret) < 8:
        fail("an admin password needs at least 8 characters")
    encoded = hash_secret(secret) if password else pins.hash_pin(secret, pepper)
    console.print(encoded, highlight=False)
    if not password and not pepper:
        err_console.print(
            "[yellow]warning:[/] no pins.pepper set: anyone with a copy of the directory "
            "can search this hash for the PIN offline (see docs/configuration.md#secrets)"
        )


def _pin_pepper(config: str | None) -> str:
    """``pins.pepper`` from the config file's ``[pins]`` and the environment; the rest of
    the file is not needed (and may still hold hashes made with an older pepper)."""
    path = config_path(config)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            section = tomllib.loads(path.read_text(encoding="utf-8")).get("pins", {})
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            fail(f"cannot read the config file {path}: {exc}")
        data = {"pins": section}
    checked, problems = check_data(data)
    errors = [p for p in problems if p.severity == "error"]
    if checked is None or errors:
        print_problems(errors, to=err_console)
        fail("the pepper setting has errors")
    return checked.pins.pepper


# --- thin shells over other packages ----------------------------------------------------
def _optional_module(name: str, feature: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            fail(f"{feature} is not available yet ({name} is missing)", NOT_AVAILABLE)
        raise


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[item]}"),
        console=console,
        transient=False,
    )


def _with_js(config: str | None, body: Callable[[Any], Awaitable[Any]]) -> Any:
    from hotdesk_runtime.nats import NatsError, connect

    _setup_cli_logging()
    settings = _load(config).config

    async def go() -> Any:
        nc, js = await connect(settings, name="hotdesk-cli", initial_attempts=1)
        try:
            return await body(js)
        finally:
            await nc.close()

    try:
        return asyncio.run(go())
    except NatsError as exc:
        fail(f"{exc} (is hotdesk running?)", NOT_AVAILABLE)


@prompts_app.command("status")
def prompts_status(config: ConfigOption = None) -> None:
    """Each bundled prompt against what the object store holds."""
    prompts = _optional_module("hotdesk_ivr.prompts", "prompt management")
    if not hasattr(prompts, "status"):
        fail("prompt status is not available yet", NOT_AVAILABLE)
    rows = _with_js(config, prompts.status)
    table = Table("set", "prompt", "installed", "bundled", "state")
    for row in rows:
        table.add_row(
            row.set,
            row.prompt,
            "-" if row.installed_version is None else str(row.installed_version),
            str(row.bundled_version),
            row.state,
        )
    console.print(table)


@prompts_app.command("update")
def prompts_update(config: ConfigOption = None) -> None:
    """Install every bundled prompt that is missing or outdated."""
    prompts = _optional_module("hotdesk_ivr.prompts", "prompt management")
    if not hasattr(prompts, "update"):
        fail("prompt update is not available yet", NOT_AVAILABLE)
    with _progress() as progress:
        task = progress.add_task("installing prompts", total=None, item="")

        def step(done: int, total: int, item: str = "") -> None:
            progress.update(task, completed=done, total=total, item=item)

        count = _with_js(config, lambda js: prompts.update(js, step))
    console.print(f"{count} prompt(s) installed")


def _projections() -> dict[str, Callable[[], Any]]:
    """Projections ``hotdesk rebuild`` knows, by name."""
    found: dict[str, Callable[[], Any]] = {}
    try:
        from hotdesk_ledger.occupancy import DeskOccupancy

        found["desk-occupancy"] = DeskOccupancy
    except ImportError:
        pass
    try:
        presence = importlib.import_module("hotdesk_presence.projections")
    except ModuleNotFoundError:
        presence = None
    if presence is not None:
        found.update(getattr(presence, "PROJECTIONS", {}))
    return found


@app.command()
def rebuild(
    projection: Annotated[str, typer.Argument(help="The projection to rebuild.")],
    config: ConfigOption = None,
) -> None:
    """Forget a projection's read model and replay the ledger into it."""
    runner_module = _optional_module("hotdesk_ledger.projection", "rebuilding projections")
    settings = _load(config).config
    known = _projections()
    if projection not in known:
        names = ", ".join(sorted(known)) or "none"
        fail(f"projection {projection!r} is not available (yet); known: {names}", NOT_AVAILABLE)
    with _progress() as progress:
        task = progress.add_task(f"rebuilding {projection}", total=None, item="")

        def step(applied: int, total: int) -> None:
            progress.update(task, completed=applied, total=total)

        async def body(js: Any) -> int:
            from hotdesk_runtime.nats import ensure_jetstream

            await ensure_jetstream(js, settings.nats.replicas)
            runner = runner_module.ProjectionRunner(js, known[projection]())
            try:
                return int(await runner.rebuild(step))
            finally:
                await runner.stop()

        applied = _with_js(config, body)
    console.print(f"{projection}: {applied} event(s) replayed")


def _admin_call(method: str, path: str, config: str | None, token: str | None) -> httpx.Response:
    settings = _load(config).config
    token = token or os.environ.get("HOTDESK_TOKEN", "")
    if not token:
        fail("an API token is needed: pass --token or set HOTDESK_TOKEN")
    url = f"http://127.0.0.1:{settings.admin.port}{path}"
    try:
        response = httpx.request(
            method, url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0
        )
    except httpx.HTTPError as exc:
        fail(f"the admin API at {url} is not reachable ({exc})", NOT_AVAILABLE)
    if response.status_code == 404 and "/api/v1/" in path:
        detail = _problem_detail(response)
        if not detail:
            fail(f"the admin API has no {path} (not available yet)", NOT_AVAILABLE)
    if response.status_code in (401, 403):
        fail(f"the admin API refused the token ({response.status_code})")
    return response


def _problem_detail(response: httpx.Response) -> str:
    """The ``detail`` of an RFC 9457 problem+json body, if the API sent one."""
    if "json" not in response.headers.get("content-type", ""):
        return ""
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("detail", "")) if isinstance(body, dict) else ""


@app.command()
def desks(config: ConfigOption = None, token: TokenOption = None) -> None:
    """Which user sits at which desk (from the admin API)."""
    response = _admin_call("GET", "/api/v1/desks", config, token)
    if response.status_code >= 400:
        fail(_problem_detail(response) or f"the admin API answered {response.status_code}")
    body = response.json()
    rows = body.get("desks", body) if isinstance(body, dict) else body
    if not isinstance(rows, list) or not rows:
        console.print("no desks")
        return
    columns = list(rows[0]) if isinstance(rows[0], dict) else ["desk"]
    table = Table(*columns)
    for row in rows:
        values = row if isinstance(row, dict) else {"desk": row}
        table.add_row(*("" if values.get(c) is None else str(values.get(c)) for c in columns))
    console.print(table)


@app.command()
def logout(
    desk: Annotated[str, typer.Argument(help="The desk, e.g. HD0001.")],
    config: ConfigOption = None,
    token: TokenOption = None,
) -> None:
    """Log out whoever sits at a desk (through the admin API)."""
    response = _admin_call("POST", f"/api/v1/desks/{desk}/logout", config, token)
    if response.status_code >= 400:
        fail(_problem_detail(response) or f"the admin API answered {response.status_code}")
    console.print(f"{desk}: logged out")


def main() -> None:
    """Entry point of the ``hotdesk`` command."""
    logging.captureWarnings(True)
    app()


if __name__ == "__main__":
    main()
