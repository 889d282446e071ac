"""Deploy-time migrations: a CloudFormation custom resource (through the CDK provider framework)
whose Create and Update bring the database schema to Alembic's head.

The database is named by `TIMEBRIDGE_DATABASE_SECRET_ARN`, a Secrets Manager secret in the
shape RDS writes (`username`, `password`, `host`, `port`, `dbname`), or by
`TIMEBRIDGE_DATABASE_URL` when that is set instead. Delete does nothing: tearing the stack down
must never drop data.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from service.adapters.db.session import database_url_from_secret, fetch_database_url

__all__ = ["database_url_from_environment", "database_url_from_secret", "handle", "handler"]

logger = logging.getLogger("timebridge.migrate")
PHYSICAL_ID = "timebridge-schema"


def database_url_from_environment(environ: Mapping[str, str] | None = None) -> str:
    """The URL from TIMEBRIDGE_DATABASE_URL, else from the secret TIMEBRIDGE_DATABASE_SECRET_ARN.

    Raises RuntimeError when neither is set.
    """
    env = os.environ if environ is None else environ
    url = env.get("TIMEBRIDGE_DATABASE_URL", "").strip()
    if url:
        return url
    arn = env.get("TIMEBRIDGE_DATABASE_SECRET_ARN", "").strip()
    if not arn:
        raise RuntimeError("set TIMEBRIDGE_DATABASE_URL or TIMEBRIDGE_DATABASE_SECRET_ARN")
    return fetch_database_url(arn)


def _upgrade(url: str) -> None:
    from service.adapters.db.session import make_engine, upgrade

    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def handle(
    event: Mapping[str, Any],
    *,
    resolve_url: Callable[[], str] = database_url_from_environment,
    upgrade_to_head: Callable[[str], None] = _upgrade,
) -> dict[str, Any]:
    """Answer one provider-framework event; raises (failing the deploy) if the upgrade fails."""
    request = event.get("RequestType")
    if request in ("Create", "Update"):
        logger.info("applying migrations (%s)", request)
        upgrade_to_head(resolve_url())
    elif request != "Delete":
        raise ValueError(f"unknown RequestType {request!r}")
    return {"PhysicalResourceId": PHYSICAL_ID, "Data": {"Revision": "head"}}


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Lambda entry point: `infra.functions.migrate.handler`."""
    logging.getLogger().setLevel(logging.INFO)
    return handle(event)
