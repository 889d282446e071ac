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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
