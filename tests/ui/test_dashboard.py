"""The dashboard (`/ui`) over the same services and authorization as the API, on SQLite and
PostgreSQL (issue 10 "Operator experience"; SEEDS S0-04 failed list with manual retry).

Rendered HTML is read as text: what an operator (or a screen reader) gets without JavaScript."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.scheduler.local import LocalSchedulerBackend
from service.application.auth import install_key
from service.application.recorder import outcome_from_record
from service.container import Container, assemble
from service.main import create_app
from service.settings import Settings
from service.ui.routes import COOKIE
from service.ui.views import csrf_token, lateness_chart
from tests.api.test_executions_api import outcome_for
from tests.api.test_tasks_api import ADMIN_KEY, OTHER_KEY, VIEWER_KEY, task_body
from tests.application.fakes import FrozenClock
from tests.support.invokers import RecordingInvoker

ORIGIN = {"origin": "http://testserver"}


@pytest.fixture
def invoker() -> RecordingInvoker:
    return RecordingInvoker()


@pytest.fixture
def container(db_sessions: sessionmaker[Session], invoker: RecordingInvoker) -> Container:
    clock = FrozenClock()
    settings = Settings(database_url="sqlite://", embedded_engine=False)
    backend = LocalSchedulerBackend(db_sessions, clock=clock)
    return assemble(settings, db_sessions, backend, clock=clock, invoker=invoker)


@pytest.fixture
def browser(db_sessions: sessionmaker[Session], container: Container) -> Iterator[TestClient]:
    """A client with no Authorization header: the dashboard signs in with a form."""
    app = create_app(container.settings, clock=container.recorder.clock)
    app.state.container = container
    install_key(db_sessions, ADMIN_KEY, system_admin=True)
    install_key(db_sessions, VIEWER_KEY, role="viewer")
    install_key(db_sessions, OTHER_KEY, tenant_name="other-team")
    yield TestClient(app, raise_server_exceptions=False, follow_redirects=False)


def sign_in(browser: TestClient, key: str = ADMIN_KEY) -> None:
    response = browser.post("/ui/signin", data={"api_key": key}, headers=ORIGIN)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ui/tasks"


def api(browser: TestClient, key: str = ADMIN_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def create_task(browser: TestClient, **changes: Any) -> dict[str, Any]:
    response = browser.post("/v1/tasks", json=task_body(**changes), headers=api(browser))
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def failed_execution(browser: TestClient, invoker: RecordingInvoker, container: Container) -> str:
    """A task run once whose target answered 500, recorded through the recorder."""
    task = create_task(browser)
    run = browser.post(f"/v1/tasks/{task['id']}/run", headers=api(browser))
    assert run.status_code == 202, run.text
    container.recorder.record_outcome(
        outcome_from_record(outcome_for(invoker.events[-1], "failed", 500))
    )
    execution_id: str = run.json()["id"]
    return execution_id


def test_visitors_are_sent_to_sign_in_and_a_wrong_key_is_a_message(browser: TestClient) -> None:
    assert browser.get("/ui").headers["location"].endswith("/ui/")
    assert browser.get("/ui/").headers["location"] == "/ui/signin"
    assert browser.get("/ui/tasks").headers["location"] == "/ui/signin"
    form = browser.get("/ui/signin")
    assert form.status_code == 200
    assert '<label for="api_key">API key</label>' in form.text
    wrong = browser.post("/ui/signin", data={"api_key": "tb_nope"}, headers=ORIGIN)
    assert wrong.status_code == 401
    assert "UNAUTHORIZED" in wrong.text and "unknown or revoked API key" in wrong.text
    assert COOKIE not in wrong.cookies
    empty = browser.post("/ui/signin", data={"api_key": " "}, headers=ORIGIN)
    assert empty.status_code == 422 and "api_key" in empty.text


def test_sign_in_sets_an_httponly_strict_cookie_and_sign_out_clears_it(
    browser: TestClient,
) -> None:
    response = browser.post("/ui/signin", data={"api_key": ADMIN_KEY}, headers=ORIGIN)
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain http here; over https it is Secure
    page = browser.get("/ui/tasks")
    assert page.status_code == 200 and "Sign out" in page.text
    out = browser.post("/ui/signout", data={"csrf": csrf_token(ADMIN_KEY)}, headers=ORIGIN)
    assert out.status_code == 303
    browser.cookies.clear()  # the response deleted it; the test client keeps a stale jar
    assert browser.get("/ui/tasks").headers["location"] == "/ui/signin"


def test_tasks_page_lists_status_and_next_fire_and_the_task_page_shows_a_timeline(
    browser: TestClient,
) -> None:
    task = create_task(browser, name="weekday-report")
    sign_in(browser)
    page = browser.get("/ui/tasks")
    assert "weekday-report" in page.text
    assert "scheduled" in page.text
    # The first fire after the frozen clock (Mon 2026-11-23 05:00 UTC) is Tue 09:00 Seoul.
    assert "2026-11-24 00:00:00" in page.text
    assert '<th scope="col">Next fire (UTC)</th>' in page.text
    detail = browser.get(f"/ui/tasks/{task['id']}")
    assert detail.status_code == 200
    assert "2026-11-24 09:00:00 KST (Tue)" in detail.text  # local
    assert "2026-11-24 00:00:00" in detail.text  # UTC
    assert detail.text.count("<circle") == 10  # ten fires on the timeline
    assert 'role="img"' in detail.text and "<title" in detail.text


def test_paused_task_has_no_timeline(browser: TestClient) -> None:
    task = create_task(browser)
    browser.post(f"/v1/tasks/{task['id']}/pause", headers=api(browser))
    sign_in(browser)
    detail = browser.get(f"/ui/tasks/{task['id']}")
    assert "No upcoming fires: the task is paused" in detail.text


def test_failed_execution_shows_with_chart_and_retry_runs_the_api_use_case(
    browser: TestClient, invoker: RecordingInvoker, container: Container
) -> None:
    execution_id = failed_execution(browser, invoker, container)
    sign_in(browser)
    page = browser.get("/ui/executions?status=failed")
    assert page.status_code == 200
    assert 'class="status status-failed"' in page.text and "failed</span>" in page.text
    assert f"/ui/executions/{execution_id}/retry" in page.text
    assert '<rect class="bar-failed"' in page.text  # its lateness bar
    retry = browser.post(
        f"/ui/executions/{execution_id}/retry",
        data={"csrf": csrf_token(ADMIN_KEY)},
        headers=ORIGIN,
    )
    assert retry.status_code == 303, retry.text
    assert retry.headers["location"].endswith("?notice=retried")
    assert invoker.events[-1]["attempt"] == 2  # handed to the invoker like the API's retry
    after = browser.get(retry.headers["location"])
    assert "Retry started" in after.text and "pending" in after.text
    audit = browser.get("/v1/audit", headers=api(browser)).json()["items"]
    assert any(entry["action"] == "execution.retry" for entry in audit)


def test_forms_without_the_csrf_token_or_from_another_site_change_nothing(
    browser: TestClient, invoker: RecordingInvoker, container: Container
) -> None:
    execution_id = failed_execution(browser, invoker, container)
    sign_in(browser)
    fired = len(invoker.events)
    url = f"/ui/executions/{execution_id}/retry"
    no_token = browser.post(url, data={}, headers=ORIGIN)
    assert no_token.status_code == 403 and "FORBIDDEN" in no_token.text
    other_site = browser.post(
        url, data={"csrf": csrf_token(ADMIN_KEY)}, headers={"origin": "https://evil.example"}
    )
    assert other_site.status_code == 403
    assert len(invoker.events) == fired


def test_application_errors_are_messages_on_the_page(
    browser: TestClient, invoker: RecordingInvoker, container: Container
) -> None:
    execution_id = failed_execution(browser, invoker, container)
    sign_in(browser, VIEWER_KEY)
    page = browser.get("/ui/executions")
    assert f"/ui/executions/{execution_id}/retry" not in page.text  # a viewer gets no button
    forbidden = browser.post(
        f"/ui/executions/{execution_id}/retry",
        data={"csrf": csrf_token(VIEWER_KEY)},
        headers=ORIGIN,
    )
    assert forbidden.status_code == 403
    assert "FORBIDDEN" in forbidden.text and "role (viewer)" in forbidden.text
    missing = browser.get("/ui/tasks/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and "NOT_FOUND" in missing.text
    assert browser.get("/ui/tasks/" + "x" * 300).status_code == 404
    nowhere = browser.get("/ui/no/such/page")
    assert nowhere.status_code == 404 and "there is no page /ui/no/such/page" in nowhere.text
    bad = browser.get("/ui/executions?status=exploded")
    assert bad.status_code == 422 and "status: must be one of" in bad.text
    assert "Traceback" not in bad.text


def test_another_tenants_task_is_not_found(browser: TestClient) -> None:
    task = create_task(browser)
    sign_in(browser, OTHER_KEY)
    page = browser.get(f"/ui/tasks/{task['id']}")
    assert page.status_code == 404 and "NOT_FOUND" in page.text
    assert task["name"] not in browser.get("/ui/tasks").text


def test_a_revoked_key_signs_the_browser_out(
    browser: TestClient, db_sessions: sessionmaker[Session]
) -> None:
    sign_in(browser, OTHER_KEY)
    browser.cookies.set(COOKIE, "tb_revoked-or-unknown", path="/ui")
    page = browser.get("/ui/tasks")
    assert page.status_code == 401 and "unknown or revoked API key" in page.text
    assert '<form method="post" action="/ui/signin">' in page.text


def test_rate_limited_is_a_message(
    db_sessions: sessionmaker[Session], invoker: RecordingInvoker
) -> None:
    clock = FrozenClock()
    settings = Settings(database_url="sqlite://", embedded_engine=False, rate_limit_per_minute=2)
    backend = LocalSchedulerBackend(db_sessions, clock=clock)
    app = create_app(settings, clock=clock)
    app.state.container = assemble(settings, db_sessions, backend, clock=clock, invoker=invoker)
    install_key(db_sessions, ADMIN_KEY, system_admin=True)
    client = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    sign_in(client)
    statuses = [client.get("/ui/alerts").status_code for _ in range(3)]
    assert statuses[-1] == 429
    assert "RATE_LIMITED" in client.get("/ui/alerts").text


def test_alerts_page_lists_final_failures(
    browser: TestClient, invoker: RecordingInvoker, container: Container
) -> None:
    task = create_task(browser, retry={"max_attempts": 1})
    browser.post(f"/v1/tasks/{task['id']}/run", headers=api(browser))
    container.recorder.record_outcome(
        outcome_from_record(outcome_for(invoker.events[-1], "failed", 500))
    )
    alerts = browser.get("/v1/alerts", headers=api(browser)).json()["items"]
    assert alerts, "the last attempt's failure raises an alert"
    sign_in(browser)
    page = browser.get("/ui/alerts")
    assert page.status_code == 200
    for alert in alerts:
        assert alert["message"] in page.text
    assert re.search(r"<th scope=\"col\">Kind</th>", page.text)


def test_lateness_chart_scales_to_the_latest_and_draws_the_threshold() -> None:
    executions: list[dict[str, Any]] = [
        {"late_seconds": 30.0, "status": "success", "scheduled_time": "b", "attempt": 1},
        {"late_seconds": None, "status": "pending", "scheduled_time": "c", "attempt": 1},
        {"late_seconds": 240.0, "status": "failed", "scheduled_time": "a", "attempt": 1},
    ]
    chart = lateness_chart(executions, 120, height=100)
    assert chart.observed == 2
    assert [bar.status for bar in chart.bars] == ["failed", "success"]  # oldest first
    assert [bar.height for bar in chart.bars] == [100.0, 12.5]
    assert chart.threshold_y == 50.0
    assert lateness_chart(executions, 600).threshold_y is None  # above every bar
