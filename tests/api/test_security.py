"""Tenants, roles and security hardening over HTTP on SQLite and PostgreSQL (issue "Tenants,
roles and security hardening"; SEEDS S0-02 API keys, S2-06 tenants, S2-07 JWT and roles).

- isolation: two tenants, every route, every id kind: 0 leaks (the tally is printed);
- secrets: header secrets appear in 0 responses, 0 log lines, and nowhere in the database;
- the role matrix; rate limit; revocation; JWT; the active-task cap; the audit log."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.scheduler.local import LocalSchedulerBackend
from service.application.auth import install_key
from service.application.recorder import outcome_from_record
from service.container import Container, assemble
from service.main import create_app
from service.settings import Settings
from tests.application.fakes import FrozenClock
from tests.support.invokers import RecordingInvoker

ROOT_KEY = "tb_root-system-admin-key"
SECRET = "s3cr3t-value-that-must-never-leak"


def build(
    sessions: sessionmaker[Session], invoker: RecordingInvoker, **overrides: Any
) -> tuple[TestClient, Container]:
    clock = FrozenClock()
    settings = Settings(database_url="sqlite://", embedded_engine=False, **overrides)
    backend = LocalSchedulerBackend(sessions, clock=clock)
    container = assemble(settings, sessions, backend, clock=clock, invoker=invoker)
    app = create_app(settings, clock=clock)
    app.state.container = container
    install_key(sessions, ROOT_KEY, system_admin=True)
    client = TestClient(app, raise_server_exceptions=False)
    return client, container


@pytest.fixture
def invoker() -> RecordingInvoker:
    return RecordingInvoker()


@pytest.fixture
def api(
    db_sessions: sessionmaker[Session], invoker: RecordingInvoker
) -> tuple[TestClient, Container]:
    return build(db_sessions, invoker)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def new_tenant(client: TestClient, name: str) -> dict[str, str]:
    """A tenant with one key per role: {"id", "admin", "editor", "viewer"}."""
    made = client.post("/v1/tenants", json={"name": name}, headers=auth(ROOT_KEY))
    assert made.status_code == 201, made.text
    tenant = {"id": made.json()["id"]}
    for role in ("admin", "editor", "viewer"):
        key = client.post(
            f"/v1/tenants/{tenant['id']}/keys", json={"role": role}, headers=auth(ROOT_KEY)
        )
        assert key.status_code == 201, key.text
        tenant[role] = key.json()["key"]
        tenant[f"{role}_key_id"] = key.json()["id"]
    return tenant


def task_body(**changes: Any) -> dict[str, Any]:
    return {
        "name": "report",
        "schedule": {"kind": "cron", "expression": "0 9 * * *"},
        "target": {
            "url": "https://svc.internal/run",
            "headers": {
                "Authorization": f"Bearer {SECRET}",
                "X-Api-Key": SECRET,
                "X-Signature-Seed": SECRET,
                "X-Plain": "visible",
            },
            "secret_headers": ["X-Signature-Seed"],
        },
        **changes,
    }


def test_tenants_and_keys_lifecycle(api: tuple[TestClient, Container]) -> None:
    client, _ = api
    team = new_tenant(client, "payments")
    listed = client.get(f"/v1/tenants/{team['id']}/keys", headers=auth(team["admin"]))
    assert listed.status_code == 200
    assert {k["role"] for k in listed.json()} == {"admin", "editor", "viewer"}
    assert all("key" not in k for k in listed.json())  # shown once, at creation only
    assert client.get("/v1/tasks", headers=auth(team["viewer"])).status_code == 200
    revoked = client.delete(f"/v1/keys/{team['viewer_key_id']}", headers=auth(team["admin"]))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    denied = client.get("/v1/tasks", headers=auth(team["viewer"]))
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "UNAUTHORIZED"
    duplicate = client.post("/v1/tenants", json={"name": "payments"}, headers=auth(ROOT_KEY))
    assert duplicate.status_code == 409
    not_root = client.post("/v1/tenants", json={"name": "x"}, headers=auth(team["admin"]))
    assert not_root.status_code == 403
    assert client.get("/v1/tenants", headers=auth(team["admin"])).status_code == 403
    names = {t["name"] for t in client.get("/v1/tenants", headers=auth(ROOT_KEY)).json()}
    assert {"default", "payments"} <= names


def test_isolation_every_route_every_id_kind(
    api: tuple[TestClient, Container], invoker: RecordingInvoker
) -> None:
    client, container = api
    a, b = new_tenant(client, "team-a"), new_tenant(client, "team-b")
    task = client.post("/v1/tasks", json=task_body(), headers=auth(a["admin"])).json()
    run = client.post(f"/v1/tasks/{task['id']}/run", headers=auth(a["admin"])).json()
    event = invoker.events[-1]
    scheduled = event["context"]["scheduled_time"]
    container.recorder.record_outcome(
        outcome_from_record(
            {
                "occurrence_key": f"{task['id']}:{scheduled}:1",
                "status": "failed",
                "status_code": 500,
                "started_at": scheduled,
            }
        )
    )
    ids = {"task": task["id"], "execution": run["id"], "tenant": a["id"], "key": a["viewer_key_id"]}
    probes = [
        ("GET", f"/v1/tasks/{ids['task']}", None),
        ("PATCH", f"/v1/tasks/{ids['task']}", {"name": "stolen"}),
        ("DELETE", f"/v1/tasks/{ids['task']}", None),
        ("POST", f"/v1/tasks/{ids['task']}/pause", None),
        ("POST", f"/v1/tasks/{ids['task']}/resume", None),
        ("POST", f"/v1/tasks/{ids['task']}/run", None),
        ("GET", f"/v1/tasks/{ids['task']}/executions", None),
        ("GET", f"/v1/executions/{ids['execution']}", None),
        ("POST", f"/v1/executions/{ids['execution']}/retry", None),
        ("POST", f"/v1/tenants/{ids['tenant']}/keys", {"role": "admin"}),
        ("GET", f"/v1/tenants/{ids['tenant']}/keys", None),
        ("DELETE", f"/v1/keys/{ids['key']}", None),
    ]
    missing = "00000000-0000-4000-8000-000000000000"
    tally = {"probes": 0, "not_found": 0, "leaks": 0}
    for method, path, body in probes:
        for role in ("admin", "editor", "viewer"):
            response = client.request(method, path, json=body, headers=auth(b[role]))
            tally["probes"] += 1
            # Indistinguishable from an id that does not exist at all.
            for kind, value in ids.items():
                path_for_missing = path.replace(value, missing) if value in path else None
                if path_for_missing is None:
                    continue
                control = client.request(method, path_for_missing, json=body, headers=auth(b[role]))
                if response.status_code == 403 and control.status_code == 403:
                    continue  # the role may not do this at all: the same answer either way
                assert (response.status_code, control.status_code) == (404, 404), (kind, path)
            if response.status_code == 404:
                tally["not_found"] += 1
            if any(value in response.text for value in (SECRET, "stolen")) or (
                response.status_code < 400
            ):
                tally["leaks"] += 1
    lists = ["/v1/tasks", "/v1/executions", "/v1/alerts", "/v1/audit"]
    for path in lists:
        seen = client.get(path, headers=auth(b["admin"]))
        tally["probes"] += 1
        assert seen.status_code == 200
        if any(value in seen.text for value in ids.values()):
            tally["leaks"] += 1
    print(f"\nisolation: {tally}")
    assert tally["leaks"] == 0
    still = client.get(f"/v1/tasks/{task['id']}", headers=auth(a["viewer"])).json()
    assert still["name"] == "report" and still["status"] == "scheduled"


def test_secrets_never_leave_in_responses_logs_or_the_database(
    api: tuple[TestClient, Container],
    invoker: RecordingInvoker,
    db_sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, _ = api
    caplog.set_level(logging.DEBUG)
    team = new_tenant(client, "secretive")
    headers = auth(team["admin"])
    responses = []
    created = client.post("/v1/tasks", json=task_body(), headers=headers)
    responses.append(created)
    task_id = created.json()["id"]
    shown = created.json()["target"]["headers"]
    assert shown == {
        "Authorization": "***",
        "X-Api-Key": "***",
        "X-Signature-Seed": "***",
        "X-Plain": "visible",
    }
    # A GET -> PATCH round trip keeps the stored secrets behind the "***".
    patched_target = {**created.json()["target"], "url": "https://svc.internal/v2"}
    responses.append(
        client.patch(f"/v1/tasks/{task_id}", json={"target": patched_target}, headers=headers)
    )
    responses.append(client.get(f"/v1/tasks/{task_id}", headers=headers))
    responses.append(client.get("/v1/tasks", headers=headers))
    responses.append(client.post("/v1/tasks/batch", json={"tasks": [task_body()]}, headers=headers))
    bad_schedule = task_body(schedule={"kind": "cron", "expression": "61 * * * *"})
    responses.append(client.post("/v1/tasks", json=bad_schedule, headers=headers))
    bad_header = task_body()
    bad_header["target"]["headers"]["X-Bad"] = 42
    responses.append(client.post("/v1/tasks", json=bad_header, headers=headers))
    unknown_field = task_body(extra=SECRET)
    responses.append(client.post("/v1/tasks", json=unknown_field, headers=headers))
    responses.append(client.post(f"/v1/tasks/{task_id}/run", headers=headers))
    responses.append(client.get("/v1/executions", headers=headers))
    responses.append(client.get("/v1/audit", headers=headers))
    responses.append(client.delete(f"/v1/tasks/{task_id}", headers=headers))
    leaking = [r.request.url.path for r in responses if SECRET in r.text]
    assert leaking == [], leaking
    assert [r for r in caplog.records if SECRET in r.getMessage()] == []
    # The proxy still gets the real values (it must send them), after the round trip.
    sent = invoker.events[-1]["target"]["headers"]
    assert sent["Authorization"] == f"Bearer {SECRET}" and sent["X-Signature-Seed"] == SECRET
    assert invoker.events[-1]["target"]["url"] == "https://svc.internal/v2"
    with db_sessions() as session:
        stored = session.execute(text("SELECT target FROM tasks")).all()
    raw = json.dumps([str(row[0]) for row in stored])
    assert SECRET not in raw and "enc:v1:" in raw


EDITOR_ROUTES = [
    ("POST", "/v1/tasks", "body"),
    ("PATCH", "/v1/tasks/{task}", {"name": "renamed"}),
    ("POST", "/v1/tasks/{task}/pause", None),
    ("POST", "/v1/tasks/{task}/resume", None),
    ("POST", "/v1/tasks/{task}/run", None),
    ("POST", "/v1/tasks/batch", "batch"),
    ("DELETE", "/v1/tasks/{other}", None),
]
VIEWER_ROUTES = [
    ("GET", "/v1/tasks", None),
    ("GET", "/v1/tasks/{task}", None),
    ("GET", "/v1/tasks/{task}/executions", None),
    ("GET", "/v1/executions", None),
    ("GET", "/v1/alerts", None),
]
ADMIN_ROUTES = [
    ("GET", "/v1/audit", None),
    ("GET", "/v1/tenants/{tenant}/keys", None),
    ("POST", "/v1/tenants/{tenant}/keys", {"role": "viewer"}),
]
ROOT_ROUTES = [("GET", "/v1/tenants", None), ("POST", "/v1/tenants", "tenant")]
RANK = {"viewer": 0, "editor": 1, "admin": 2}


def test_role_matrix(api: tuple[TestClient, Container]) -> None:
    client, _ = api
    team = new_tenant(client, "matrix")
    seen: dict[tuple[str, str, str], int] = {}
    for role in ("viewer", "editor", "admin"):
        ids = {
            "tenant": team["id"],
            "task": client.post("/v1/tasks", json=task_body(), headers=auth(team["admin"])).json()[
                "id"
            ],
            "other": client.post("/v1/tasks", json=task_body(), headers=auth(team["admin"])).json()[
                "id"
            ],
        }
        for needed, routes in (
            ("viewer", VIEWER_ROUTES),
            ("editor", EDITOR_ROUTES),
            ("admin", ADMIN_ROUTES),
            ("root", ROOT_ROUTES),
        ):
            for method, template, body in routes:
                payload: Any = body
                if body == "body":
                    payload = task_body()
                elif body == "batch":
                    payload = {"tasks": [task_body()]}
                elif body == "tenant":
                    payload = {"name": f"new-{role}"}
                path = template.format(**ids)
                response = client.request(method, path, json=payload, headers=auth(team[role]))
                allowed = needed != "root" and RANK[role] >= RANK[needed]
                seen[(role, method, template)] = response.status_code
                if allowed:
                    assert response.status_code < 400, (role, method, template, response.text)
                else:
                    assert response.status_code == 403, (role, method, template, response.text)
                    assert response.json()["error"]["code"] == "FORBIDDEN"
    print(f"\nrole matrix: {len(seen)} checks")


def test_rate_limit_per_tenant(
    db_sessions: sessionmaker[Session], invoker: RecordingInvoker
) -> None:
    client, _ = build(db_sessions, invoker, rate_limit_per_minute=60)
    noisy, quiet = new_tenant(client, "noisy"), new_tenant(client, "quiet")
    answers = [client.get("/v1/tasks", headers=auth(noisy["viewer"])) for _ in range(70)]
    limited = [r for r in answers if r.status_code == 429]
    assert limited, "the 61st request in a minute is refused"
    assert limited[0].json()["error"]["code"] == "RATE_LIMITED"
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert client.get("/v1/tasks", headers=auth(quiet["viewer"])).status_code == 200


def test_active_task_cap(db_sessions: sessionmaker[Session], invoker: RecordingInvoker) -> None:
    client, _ = build(db_sessions, invoker, max_active_tasks=2)
    team = new_tenant(client, "capped")
    for _ in range(2):
        assert (
            client.post("/v1/tasks", json=task_body(), headers=auth(team["editor"])).status_code
            == 201
        )
    refused = client.post("/v1/tasks", json=task_body(), headers=auth(team["editor"]))
    assert refused.status_code == 409 and "cap" in refused.json()["error"]["message"]


def test_the_audit_log_names_who_did_what(api: tuple[TestClient, Container]) -> None:
    client, _ = api
    team = new_tenant(client, "audited")
    task = client.post("/v1/tasks", json=task_body(), headers=auth(team["editor"])).json()
    client.patch(f"/v1/tasks/{task['id']}", json={"name": "x"}, headers=auth(team["editor"]))
    client.post(f"/v1/tasks/{task['id']}/run", headers=auth(team["editor"]))
    client.delete(f"/v1/tasks/{task['id']}", headers=auth(team["admin"]))
    events = client.get("/v1/audit", headers=auth(team["admin"])).json()["items"]
    by_action = {e["action"]: e for e in events if e["target_id"] == task["id"]}
    assert set(by_action) == {"task.create", "task.update", "task.run", "task.cancel"}
    editor, admin = f"key:{team['editor_key_id']}", f"key:{team['admin_key_id']}"
    assert by_action["task.create"]["actor"] == editor
    assert by_action["task.cancel"]["actor"] == admin
    assert by_action["task.run"]["details"]["execution_id"]
    assert client.get("/v1/audit", headers=auth(team["viewer"])).status_code == 403


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Basic abc", "Bearer " + "x" * 5000, "Bearer a.b.c", "Bearer tb_unknown"],
)
def test_bad_credentials_are_401_never_500(api: tuple[TestClient, Container], header: str) -> None:
    client, _ = api
    response = client.get("/v1/tasks", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


# --- JWT --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signing_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_url(signing_key: Any) -> Iterator[str]:
    from jwt.algorithms import RSAAlgorithm

    jwk = json.loads(RSAAlgorithm.to_jwk(signing_key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "test-key", "use": "sig", "alg": "RS256"}]})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()


def token(key: Any, **claims: Any) -> str:
    import jwt

    base = {
        "sub": "alice",
        "aud": "timebridge",
        "iss": "https://idp.example",
        "exp": int(time.time()) + 300,
        "tenant": "jwt-team",
        "role": "editor",
    }
    return jwt.encode({**base, **claims}, key, algorithm="RS256", headers={"kid": "test-key"})


def test_jwt_bearer_tokens(
    db_sessions: sessionmaker[Session],
    invoker: RecordingInvoker,
    jwks_url: str,
    signing_key: Any,
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    client, _ = build(
        db_sessions,
        invoker,
        jwt_jwks_url=jwks_url,
        jwt_audience="timebridge",
        jwt_issuer="https://idp.example",
    )
    new_tenant(client, "jwt-team")
    good = client.post("/v1/tasks", json=task_body(), headers=auth(token(signing_key)))
    assert good.status_code == 201, good.text
    viewer = token(signing_key, role="viewer")
    assert client.post("/v1/tasks", json=task_body(), headers=auth(viewer)).status_code == 403
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for bad in (
        token(stranger),  # bad signature
        token(signing_key, exp=int(time.time()) - 10),  # expired
        token(signing_key, aud="someone-else"),  # wrong audience
        token(signing_key, iss="https://evil.example"),  # wrong issuer
        token(signing_key, tenant="nobody"),  # unknown tenant
        token(signing_key, role="owner"),  # unknown role
    ):
        response = client.get("/v1/tasks", headers=auth(bad))
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "UNAUTHORIZED"
    events = client.get("/v1/audit", headers=auth(token(signing_key, role="admin"))).json()
    created = [e for e in events["items"] if e["action"] == "task.create"]
    assert [e["actor"] for e in created] == ["jwt:alice"]
