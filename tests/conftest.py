"""Suite-wide setup. Under CI=true an unreachable PostgreSQL fails the run instead of letting
PostgreSQL-backed tests skip quietly (the server is expected at TIMEBRIDGE_TEST_POSTGRES_HOST,
default 127.0.0.1:5432)."""

from __future__ import annotations

import os
import socket

import pytest


def _postgres_address() -> tuple[str, int]:
    host, _, port = os.environ.get("TIMEBRIDGE_TEST_POSTGRES_HOST", "127.0.0.1:5432").partition(":")
    return host, int(port or 5432)


def postgres_reachable(timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection(_postgres_address(), timeout=timeout):
            return True
    except OSError:
        return False


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("CI", "").lower() == "true" and not postgres_reachable():
        host, port = _postgres_address()
        pytest.exit(f"CI=true but PostgreSQL is unreachable at {host}:{port}", returncode=1)
