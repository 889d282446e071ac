"""Browser test of the dashboard (issue 10 "Operator experience"): the app in a uvicorn
subprocess (SQLite, local backend, embedded engine), a loopback target that answers 500, and
Debian's headless `chromium` driven by Playwright (the system browser's executable: Playwright
never downloads one here). Signs in with a key, sees the task and its next fires, finds the
failed execution, retries it and saves a screenshot.

`make test` installs `chromium` when it is missing (as root, with apt-get). Without it the test
skips, except under CI=true, where it fails. With TIMEBRIDGE_UI_SCREENSHOT=<path> the task page
is also saved there (the README's picture, docs/dashboard.png, is made that way)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_local_engine_e2e import Server, wait_for
from tests.proxy.loopback import TargetServer


def system_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path is not None:
            return path
    reason = (
        "Debian's chromium is not installed (`make test` installs it as root: "
        "apt-get install chromium)"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason=reason)


@pytest.fixture
def chromium() -> str:
    return system_chromium()


@pytest.fixture
def receiver() -> Iterator[TargetServer]:
    server = TargetServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path)
    running.start()
    yield running
    running.stop()


def failed_run(server: Server, receiver: TargetServer) -> dict[str, Any]:
    """A weekday task whose target answers 500, run once now: a failed execution for real."""
    response = server.client.post(
        "/v1/tasks",
        json={
            "name": "weekday-report",
            "schedule": {"kind": "cron", "expression": "0 9 * * 1-5", "timezone": "Asia/Seoul"},
            "target": {"url": receiver.url("/status/500"), "body": {"full": True}},
            "retry": {"max_attempts": 1},
        },
    )
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    assert server.client.post(f"/v1/tasks/{task['id']}/run").status_code == 202

    def failed() -> bool:
        items = server.client.get(f"/v1/tasks/{task['id']}/executions").json()["items"]
        return any(item["status"] == "failed" for item in items)

    wait_for(failed, 30, "the run to fail")
    return task


def test_sign_in_see_task_fires_and_failure_then_retry(
    chromium: str, server: Server, receiver: TargetServer, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    task = failed_run(server, receiver)
    base = f"http://127.0.0.1:{server.port}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/ui")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.get_by_label("API key").fill("tb_wrong-key")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("unknown or revoked API key")

        page.get_by_label("API key").fill(server.client.headers["Authorization"][7:])
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
        row = page.get_by_role("row").filter(has_text="weekday-report")
        expect(row).to_contain_text("scheduled")
        expect(row).to_contain_text(task["next_fire_times"][0].replace("T", " ").rstrip("Z"))

        row.get_by_role("link", name="weekday-report").click()
        fires = page.get_by_role("table", name="Next 10 fires in Asia/Seoul and in UTC")
        expect(fires.get_by_role("row")).to_have_count(11)  # header + 10 fires
        expect(fires).to_contain_text("09:00:00 KST")
        expect(page.get_by_role("img", name="Timeline of the next 10 fires")).to_be_visible()

        page.get_by_role("navigation").get_by_role("link", name="Executions").click()
        failed_row = page.get_by_role("row").filter(has_text="failed")
        expect(failed_row).to_have_count(1)
        expect(failed_row).to_contain_text("500")
        expect(page.get_by_role("img", name="Lateness of the 1 executions")).to_be_visible()
        page.screenshot(path=str(tmp_path / "executions.png"), full_page=True)

        failed_row.get_by_role("button", name="Retry").click()
        expect(page.get_by_role("status")).to_contain_text("Retry started")
        expect(page.get_by_role("heading", name="Task weekday-report")).to_be_visible()

        def retried() -> bool:
            items = server.client.get(f"/v1/tasks/{task['id']}/executions").json()["items"]
            return [item["attempt"] for item in items if item["status"] == "failed"] == [2, 1]

        wait_for(retried, 30, "the retry to run (the target still answers 500)")
        page.reload()
        expect(page.get_by_role("table", name="The task's 20 newest executions")).to_contain_text(
            "manual"
        )
        screenshot = tmp_path / "dashboard.png"
        page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.stat().st_size > 10_000
        published = os.environ.get("TIMEBRIDGE_UI_SCREENSHOT")
        if published:
            shutil.copyfile(screenshot, published)
        browser.close()
    assert sum(1 for r in receiver.received if r.path == "/status/500") == 2
