"""The `timebridge` command line. Commands print for people by default and JSON with --json;
bad input exits 2 with one line on stderr, never a traceback."""

from __future__ import annotations

import json
from datetime import UTC, datetime
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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
