"""The `timebridge` command line. Commands print for people by default and JSON with --json;
bad input exits 2 with one line on stderr, never a traceback."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from service.domain.errors import InvalidSchedule, TimebridgeError
from service.domain.schedules import compile_schedule, explain

app = typer.Typer(
    name="timebridge",
    help="Timebridge: schedule HTTP calls on AWS EventBridge Scheduler.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_INVALID = 2


@app.callback()
def _root() -> None:
    """Timebridge: schedule HTTP calls on AWS EventBridge Scheduler."""


def spec_for(text: str, timezone: str | None) -> dict[str, Any]:
    """Guess the schedule kind of a bare expression: AWS at/rate/cron, RRULE or unix cron."""
    stripped = text.strip()
    spec: dict[str, Any]
    if stripped.startswith("at(") and stripped.endswith(")"):
        spec = {"kind": "once", "at": stripped[3:-1]}
    elif stripped.startswith("rate("):
        spec = {"kind": "rate", "expression": stripped}
    elif "FREQ=" in stripped.upper():
        spec = {"kind": "rrule", "rrule": stripped}
    else:
        spec = {"kind": "cron", "expression": stripped}
    if timezone is not None:
        spec["timezone"] = timezone
    return spec


@app.command("explain")
def explain_command(
    expression: Annotated[
        str, typer.Argument(help="AWS at()/rate()/cron(), unix cron (5 fields, @daily) or RRULE")
    ],
    tz: Annotated[str | None, typer.Option("--tz", help="IANA time zone, default UTC")] = None,
    count: Annotated[int, typer.Option("--count", min=1, max=1000, help="fires to list")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Show what an expression provisions as on AWS, and when it fires."""
    now = datetime.now(UTC)
    try:
        compiled = compile_schedule(spec_for(expression, tz), now=now)
    except InvalidSchedule as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from None
    view = explain(compiled, now=now, count=count)
    if as_json:
        typer.echo(json.dumps(view))
        return
    rows = [
        ("AWS expression", view["aws_expression"] or "(none: never fires again)"),
        ("Mode", view["mode"]),
        ("Time zone", compiled.timezone),
        ("Description", view["description"]),
    ]
    for label, value in rows:
        typer.echo(f"{label:<15} {value}")
    for i, warning in enumerate(view["warnings"] or ["-"]):
        typer.echo(f"{'Warnings' if i == 0 else '':<15} {warning}")
    fires = view["next_fire_times"]
    if not fires:
        typer.echo(f"{'Next fires':<15} none")
    for i, fire in enumerate(fires):
        typer.echo(f"{'Next fires' if i == 0 else '':<15} {fire['utc']:<21} {fire['local']}")


@app.command("reconcile")
def reconcile_command(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Make the scheduler match the database: finish interrupted provisioning, recreate
    vanished schedules, repair drift, delete orphans. Exit 1 if any repair failed."""
    from dataclasses import asdict

    from service.container import build_container
    from service.settings import Settings

    try:
        container = build_container(Settings())
        report = container.reconciler.run()
    except TimebridgeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps({**asdict(report), "repairs": report.repairs}))
    else:
        typer.echo(
            f"checked {report.checked_tasks} tasks and {report.checked_schedules} schedules: "
            f"{report.repairs} repairs (adopted {report.adopted}, created {report.created}, "
            f"updated {report.updated}, deleted {report.deleted_for_terminal_tasks} for ended "
            f"tasks, {report.orphans_deleted} orphans)"
        )
        for error in report.errors:
            typer.echo(f"failed: {error}", err=True)
    if report.errors:
        raise typer.Exit(1)


@app.command("engine")
def engine_command() -> None:
    """Run the local engine on its own (when the API runs with TIMEBRIDGE_EMBEDDED_ENGINE=false,
    or to add engines on one PostgreSQL database). Stops on Ctrl-C."""
    from service.adapters.scheduler.engine import EngineLocked
    from service.container import build_container
    from service.settings import Settings

    settings = Settings()
    if settings.backend != "local":
        typer.echo(
            "error: the engine fires the local backend; TIMEBRIDGE_BACKEND is not local", err=True
        )
        raise typer.Exit(EXIT_INVALID)
    container = build_container(settings)
    typer.echo(f"Timebridge engine firing {settings.database_url.split('@')[-1]} (Ctrl-C stops)")
    try:
        container.local_engine.run_forever()
    except EngineLocked as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        container.close()


@app.command("sweep")
def sweep_command(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Time out silent callbacks, finish interrupted follow-ups, prune old history, reconcile."""
    from service.container import build_container
    from service.recorder import sweep
    from service.settings import Settings

    container = build_container(Settings())
    try:
        result = sweep(container)
    finally:
        container.close()
    typer.echo(json.dumps(result) if as_json else ", ".join(f"{k} {v}" for k, v in result.items()))


@app.command("demo-receiver")
def demo_receiver_command(
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 9000,
    callback_after: Annotated[
        float, typer.Option("--callback-after", min=0, help="seconds before reporting success")
    ] = 1.0,
    fail_every: Annotated[
        int, typer.Option("--fail-every", min=0, help="answer 503 to every n-th request")
    ] = 0,
) -> None:
    """A receiver on 127.0.0.1 that prints the signed requests it gets and checks them."""
    from proxy_lambda.signing import parse_signing_secrets
    from service.container import resolve_signing_secret
    from service.demo_receiver import DemoReceiver
    from service.settings import Settings

    secret = resolve_signing_secret(Settings())
    keys = parse_signing_secrets(secret) if secret else ()
    server = DemoReceiver(
        port, keys, callback_after=callback_after, fail_every=fail_every, echo=typer.echo
    )
    typer.echo(f"demo receiver on http://127.0.0.1:{port}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


tenants_app = typer.Typer(
    help="Tenants (run where the database is reachable).", no_args_is_help=True
)
keys_app = typer.Typer(help="API keys of a tenant.", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")

# The CLI runs beside the database, as its operator: it acts as a system administrator.
OPERATOR_ACTOR = "cli"


def _operator() -> tuple[Any, Any]:
    from service.application.auth import Principal
    from service.container import build_container
    from service.settings import Settings

    container = build_container(Settings())
    principal = Principal(
        tenant_id="", role="admin", key_id=OPERATOR_ACTOR, system_admin=True, subject="cli"
    )
    return container, principal


def _run(action: Any) -> Any:
    try:
        return action()
    except TimebridgeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID if exc.status == 422 else 1) from None


@tenants_app.command("create")
def tenants_create(name: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Create a tenant."""
    container, principal = _operator()
    tenant = _run(lambda: container.tenancy.create_tenant(principal, name))
    typer.echo(json.dumps(tenant) if as_json else f"{tenant['id']}  {tenant['name']}")


@tenants_app.command("list")
def tenants_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    container, principal = _operator()
    tenants = _run(lambda: container.tenancy.list_tenants(principal))
    if as_json:
        typer.echo(json.dumps(tenants))
        return
    for tenant in tenants:
        typer.echo(f"{tenant['id']}  {tenant['name']}")


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option("--tenant", help="tenant id")],
    role: Annotated[str, typer.Option("--role", help="admin, editor or viewer")] = "editor",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a key; it is printed this once."""
    container, principal = _operator()
    key = _run(lambda: container.tenancy.create_key(principal, tenant, role))
    typer.echo(json.dumps(key) if as_json else f"{key['id']}  {key['role']}  {key['key']}")


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str, typer.Option("--tenant", help="tenant id")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    container, principal = _operator()
    keys = _run(lambda: container.tenancy.list_keys(principal, tenant))
    if as_json:
        typer.echo(json.dumps(keys))
        return
    for key in keys:
        state = f"revoked {key['revoked_at']}" if key["revoked_at"] else "active"
        typer.echo(f"{key['id']}  {key['role']:<6}  {state}")


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key at once."""
    container, principal = _operator()
    key = _run(lambda: container.tenancy.revoke_key(principal, key_id))
    typer.echo(f"{key['id']} revoked at {key['revoked_at']}")


# --- talking to a running Timebridge (TIMEBRIDGE_URL, TIMEBRIDGE_API_KEY) ----------------------

tasks_remote = typer.Typer(help="Tasks, through the HTTP API.", no_args_is_help=True)
executions_remote = typer.Typer(
    help="Execution history, through the HTTP API.", no_args_is_help=True
)
app.add_typer(tasks_remote, name="tasks")
app.add_typer(executions_remote, name="executions")
EXIT_API, EXIT_UNREACHABLE = 1, 3
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]


def _remote(action: Any) -> Any:
    """Run `action(remote)`; failures print one line and exit 1 (refused) or 3 (unreachable)."""
    from service.remote import Remote, RemoteError

    try:
        return action(Remote())
    except RemoteError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_UNREACHABLE if exc.status == 0 else EXIT_API) from None


def _show_tasks(tasks: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(tasks))
        return
    for task in tasks:
        upcoming = (task.get("next_fire_times") or ["-"])[0]
        state = f"{task['status']:<12} {task['mode']:<8}"
        typer.echo(f"{task['id']}  {state} next {upcoming:<21} {task['name']}")


def _show_executions(items: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(items))
        return
    for e in items:
        code = e.get("status_code") or e.get("error_kind") or ""
        typer.echo(
            f"{e['id']}  {e['status']:<14} {code!s:<16} attempt {e['attempt']}  "
            f"scheduled {e['scheduled_time']}  task {e['task_id']}"
        )


@tasks_remote.command("list")
def tasks_list(
    status: Annotated[str | None, typer.Option("--status")] = None,
    name: Annotated[str | None, typer.Option("--name")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every task (newest first), optionally by status or name."""
    params = {k: v for k, v in {"status": status, "name": name, "limit": 500}.items() if v}
    _show_tasks(_remote(lambda r: list(r.pages("/v1/tasks", params))), as_json)


@tasks_remote.command("show")
def tasks_show(task_id: str, as_json: JsonOption = False) -> None:
    task = _remote(lambda r: r.call("GET", f"/v1/tasks/{task_id}"))
    if as_json:
        typer.echo(json.dumps(task))
        return
    for key in ("id", "name", "status", "mode", "aws_expression", "timezone", "schedule_arn"):
        typer.echo(f"{key:<15} {task.get(key)}")
    for i, fire in enumerate(task.get("next_fire_times") or ["-"]):
        typer.echo(f"{'next fires' if i == 0 else '':<15} {fire}")


@tasks_remote.command("create")
def tasks_create(
    body: Annotated[str, typer.Argument(help="the task as JSON, or @file.json")],
    as_json: JsonOption = False,
) -> None:
    """Create a task from its JSON body (see the README)."""
    text = Path(body[1:]).read_text() if body.startswith("@") else body
    try:
        document = json.loads(text)
    except ValueError as exc:
        typer.echo(f"error: the task is not JSON: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from None
    task = _remote(lambda r: r.call("POST", "/v1/tasks", json=document))
    _show_tasks([task], as_json)


def _task_action(action: str) -> Any:
    def command(task_id: str, as_json: JsonOption = False) -> None:
        method, path = (
            ("DELETE", f"/v1/tasks/{task_id}")
            if action == "cancel"
            else (
                "POST",
                f"/v1/tasks/{task_id}/{action}",
            )
        )
        result = _remote(lambda r: r.call(method, path))
        if action == "run":
            _show_executions([result], as_json)
        else:
            _show_tasks([result], as_json)

    command.__doc__ = {
        "pause": "Pause a task (its schedule is disabled).",
        "resume": "Resume a paused task.",
        "run": "Run a task once now; its schedule is left alone.",
        "cancel": "Cancel a task: its schedule is deleted, its history kept.",
    }[action]
    return command


for _action in ("pause", "resume", "run", "cancel"):
    tasks_remote.command(_action)(_task_action(_action))


@executions_remote.command("list")
def executions_list(
    status: Annotated[str | None, typer.Option("--status", help="e.g. failed")] = None,
    task: Annotated[str | None, typer.Option("--task")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 50,
    as_json: JsonOption = False,
) -> None:
    """Executions, newest first."""
    params = {k: v for k, v in {"status": status, "task_id": task, "limit": limit}.items() if v}
    page = _remote(lambda r: r.call("GET", "/v1/executions", params=params))
    _show_executions(page["items"], as_json)


@executions_remote.command("show")
def executions_show(execution_id: str, as_json: JsonOption = False) -> None:
    execution = _remote(lambda r: r.call("GET", f"/v1/executions/{execution_id}"))
    if as_json:
        typer.echo(json.dumps(execution))
        return
    for key, value in execution.items():
        typer.echo(f"{key:<18} {value}")


@executions_remote.command("retry")
def executions_retry(execution_id: str, as_json: JsonOption = False) -> None:
    """Run a failed execution's occurrence again now."""
    started = _remote(lambda r: r.call("POST", f"/v1/executions/{execution_id}/retry"))
    _show_executions([started], as_json)


@app.command("import")
def import_command(
    path: Annotated[Path, typer.Argument(help="a .jsonl (one task per line) or .csv file")],
    as_json: JsonOption = False,
) -> None:
    """Create the tasks of a file through the batch endpoint. Safe to run again: each row
    carries an idempotency key from its content, so nothing is created twice. Exit 1 if any
    row failed (each is reported)."""
    from rich.progress import Progress

    from service.remote import idempotency_key, read_rows

    if not path.exists():
        typer.echo(f"error: {path} does not exist", err=True)
        raise typer.Exit(EXIT_INVALID)
    rows = read_rows(path)
    problems = [(line, problem) for line, _, problem in rows if problem is not None]
    good = [(line, body) for line, body, problem in rows if body is not None and problem is None]
    tally = {"rows": len(rows), "created": 0, "existing": 0, "failed": len(problems)}

    def send(remote: Any) -> None:
        with Progress(disable=as_json, transient=True) as progress:
            bar = progress.add_task("importing", total=len(good))
            for start in range(0, len(good), 1000):
                chunk = good[start : start + 1000]
                items = [
                    {**body, "idempotency_key": idempotency_key(path, body)} for _, body in chunk
                ]
                answer = remote.call("POST", "/v1/tasks/batch", json={"tasks": items})
                for (line, _), result in zip(chunk, answer["results"], strict=True):
                    if result["status"] == 201:
                        tally["created"] += 1
                    elif result["status"] == 200:
                        tally["existing"] += 1
                    else:
                        error = result.get("error") or {}
                        where = f"{error.get('field')}: " if error.get("field") else ""
                        problems.append((line, f"{where}{error.get('message', 'refused')}"))
                        tally["failed"] += 1
                progress.advance(bar, len(chunk))

    _remote(send)
    problems.sort()
    if as_json:
        typer.echo(json.dumps({**tally, "errors": [{"line": n, "error": e} for n, e in problems]}))
    else:
        for line, problem in problems:
            typer.echo(f"line {line}: {problem}", err=True)
        typer.echo(
            f"{tally['rows']} rows: {tally['created']} created, {tally['existing']} already "
            f"there, {tally['failed']} failed"
        )
    if problems:
        raise typer.Exit(EXIT_API)


@app.command("export")
def export_command() -> None:
    """Every task as JSONL (its create body), ready for `timebridge import`. Secret header
    values come out as *** and must be filled in again."""

    def bodies(remote: Any) -> list[dict[str, Any]]:
        fields = ("name", "schedule", "target", "retry", "callback", "metadata")
        tasks = remote.pages("/v1/tasks", {"limit": 500})
        return [{k: t[k] for k in fields} for t in tasks if t["status"] != "cancelled"]

    for body in _remote(bodies):
        typer.echo(json.dumps(body))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
