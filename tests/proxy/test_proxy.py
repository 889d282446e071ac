"""The HTTP-proxy Lambda against a real HTTP server on 127.0.0.1 (allow-listed per test).

Events are made the way production makes them: `service.domain.tasks.schedule_input` writes the
Input, and the <aws.scheduler.*> placeholders are filled in as EventBridge Scheduler does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook, WebhookVerificationError

from proxy_lambda.guard import UnsafeTarget, check_target, parse_inet_aton
from proxy_lambda.handler import handle, occurrence_key
from proxy_lambda.settings import ProxyConfigurationError, ProxySettings
from proxy_lambda.signing import (
    SigningSecretError,
    make_callback_token,
    parse_signing_secrets,
    verify_callback_token,
)
from proxy_lambda.transport import OutgoingRequest, Sender, TargetResponse, Urllib3Sender
from service.domain.tasks import (
    CONTEXT_ATTRIBUTES,
    normalize_callback,
    normalize_target,
    schedule_input,
)
from tests.proxy.loopback import TargetServer
from tests.support.loop_sender import LoopSender

ROOT = Path(__file__).resolve().parents[2]
TASK_ID = "5b0c8a52-6f0e-4d3c-9a3e-2f4f1e9d7c11"
SCHEDULED = "2026-11-23T09:00:00Z"
ARN = f"arn:aws:scheduler:eu-west-1:123456789012:schedule/timebridge/tb-{TASK_ID}"
SECRET = "whsec_" + base64.b64encode(b"timebridge-test-secret-0001").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"timebridge-test-secret-0000").decode()
PUBLIC_URL = "https://timebridge.example.com"


def secret_settings(**env: str) -> ProxySettings:
    return ProxySettings.from_env(
        {
            "TIMEBRIDGE_ALLOWED_TARGET_NETWORKS": "127.0.0.0/8",
            "TIMEBRIDGE_SIGNING_SECRET": SECRET,
            "TIMEBRIDGE_PUBLIC_URL": PUBLIC_URL,
            **{f"TIMEBRIDGE_{name.upper()}": value for name, value in env.items()},
        }
    )


def fired(
    url: str,
    *,
    attempt: int = 1,
    execution_id: str = "6f1d2c7e-0000-4000-8000-000000000001",
    delivery_attempt: int = 1,
    callback: bool = False,
    **target: Any,
) -> dict[str, Any]:
    """The event the proxy receives when the task's schedule fires at SCHEDULED; the body is
    {"full": true} unless given."""
    target.setdefault("body", {"full": True})
    text = schedule_input(
        task_id=TASK_ID,
        tenant_id="default",
        target=normalize_target({"url": url, **target}),
        callback=normalize_callback({"enabled": callback}),
        attempt=attempt,
    )
    values = {
        "schedule_arn": ARN,
        "scheduled_time": SCHEDULED,
        "execution_id": execution_id,
        "attempt_number": str(delivery_attempt),
    }
    for name, placeholder in CONTEXT_ATTRIBUTES.items():
        text = text.replace(placeholder, values[name])
    event: dict[str, Any] = json.loads(text)
    return event


def with_url(url: str) -> dict[str, Any]:
    """A fired event whose target URL the API would not have accepted in the first place."""
    event = fired("https://hooks.example.com/")
    event["target"]["url"] = url
    return event


def never_send(request: OutgoingRequest) -> TargetResponse:
    raise AssertionError(f"the proxy tried to call {request.addresses} for {request.host}")


class RecordingSender:
    """Answers 200 without a network, keeping every request it was asked to send."""

    def __init__(self) -> None:
        self.requests: list[OutgoingRequest] = []

    def __call__(self, request: OutgoingRequest, /) -> TargetResponse:
        self.requests.append(request)
        return TargetResponse(200, {"content-type": "text/plain"}, b"ok", False)


def fixed_resolver(answers: dict[str, Sequence[str]]) -> Callable[[str, int], Sequence[str]]:
    def resolve(host: str, port: int) -> Sequence[str]:
        return answers[host]

    return resolve


@pytest.fixture(scope="module")
def server() -> Iterator[TargetServer]:
    target = TargetServer().start()
    yield target
    target.stop()


@pytest.fixture(scope="module", params=["urllib3", "asyncio"])
def sender(request: pytest.FixtureRequest) -> Iterator[Sender]:
    """Every calling test runs with the Lambda's sender and with the local engine's (the
    asyncio one behind the same seam): both must behave alike."""
    if request.param == "urllib3":
        yield Urllib3Sender()
        return
    looped = LoopSender()
    yield looped
    looped.close()


@pytest.fixture
def settings() -> ProxySettings:
    return secret_settings()


def deliver(event: Any, sender: Sender, settings: ProxySettings, **kwargs: Any) -> dict[str, Any]:
    outcome = handle(event, send=sender, settings=settings, **kwargs)
    json.dumps(outcome)  # the record travels as JSON (Lambda destination, SQS)
    return outcome


# --- calling the target ---------------------------------------------------------------------


def test_2xx_is_success_with_status_body_headers_and_latency(
    server: TargetServer, sender: Urllib3Sender, settings: ProxySettings
) -> None:
    outcome = deliver(fired(server.url("/ok")), sender, settings)
    assert outcome["status"] == "success"
    assert outcome["status_code"] == 200
    assert outcome["response_body"] == '{"ok":true}'
    assert outcome["response_headers"] == {"content-type": "application/json"}
    assert isinstance(outcome["latency_ms"], int) and outcome["latency_ms"] >= 0
    assert outcome["error_kind"] is None and outcome["error"] is None
    assert outcome["occurrence_key"] == f"{TASK_ID}:{SCHEDULED}:1"
    assert outcome["task_id"] == TASK_ID and outcome["tenant_id"] == "default"
    assert outcome["scheduled_time"] == SCHEDULED and outcome["attempt"] == 1
    assert outcome["schedule_arn"] == ARN and outcome["delivery_attempt"] == 1


def test_method_headers_query_and_json_body_reach_the_target(
    server: TargetServer, sender: Urllib3Sender, settings: ProxySettings
) -> None:
    event = fired(
        server.url("/orders?source=cron"),
        method="PUT",
        headers={"X-Trace": "abc", "Authorization": "Bearer t0ken"},
        query={"full": True, "limit": 10},
        body={"report": "nightly", "ünïcode": "✓"},
    )
    deliver(event, sender, settings)
    request = server.received[-1]
    assert request.method == "PUT"
    assert request.path == "/orders?source=cron&full=true&limit=10"
    assert request.headers["x-trace"] == "abc"
    assert request.headers["authorization"] == "Bearer t0ken"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["host"] == f"127.0.0.1:{server.port}"
    assert json.loads(request.body) == {"report": "nightly", "ünïcode": "✓"}


def test_a_task_content_type_is_kept_and_a_text_body_sent_as_written(
    server: TargetServer, sender: Urllib3Sender, settings: ProxySettings
) -> None:
    event = fired(server.url("/xml"), headers={"Content-Type": "text/xml"}, body="<run/>")
    deliver(event, sender, settings)
    assert server.received[-1].headers["content-type"] == "text/xml"
    assert server.received[-1].body == b"<run/>"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_get_and_head_send_no_body(
    method: str, server: TargetServer, sender: Urllib3Sender, settings: ProxySettings
) -> None:
    outcome = deliver(fired(server.url("/read"), method=method, body={"x": 1}), sender, settings)
    assert outcome["status"] == "success"
    request = server.received[-1]
    assert request.method == method and request.body == b""
    assert "content-type" not in request.headers


@pytest.mark.parametrize("body", [None, "", {}, []])
def test_an_empty_body_is_not_sent(
    body: Any, server: TargetServer, sender: Urllib3Sender, settings: ProxySettings
) -> None:
    deliver(fired(server.url("/empty"), body=body), sender, settings)
    request = server.received[-1]
    assert request.body == b"" and "content-type" not in request.headers


@pytest.mark.parametrize("code", [400, 404, 409, 422])
def test_4xx_is_failed_with_its_status_and_body(
    code: int, server: TargetServer, sender: Urllib3Sender, settings: ProxySettings
) -> None:
    outcome = deliver(fired(server.url(f"/status/{code}")), sender, settings)
    assert outcome["status"] == "failed"
    assert outcome["status_code"] == code
    assert outcome["response_body"] == f"status {code}"
    assert outcome["error_kind"] is None


@pytest.mark.parametrize("code", [500, 502, 503])
def test_5xx_is_failed_with_its_status(
    code: int, server: TargetServer, sender: Urllib3Sender, settings: ProxySettings
) -> None:
    outcome = deliver(fired(server.url(f"/status/{code}")), sender, settings)
    assert (outcome["status"], outcome["status_code"]) == ("failed", code)


def test_retry_after_is_kept_for_the_retry_policy(
    server: TargetServer, sender: Urllib3Sender, settings: ProxySettings
) -> None:
    outcome = deliver(fired(server.url("/retry-after")), sender, settings)
    assert outcome["status_code"] == 503
    assert outcome["response_headers"]["retry-after"] == "120"


def test_a_target_slower_than_its_timeout_times_out(
    server: TargetServer, sender: Urllib3Sender, settings: ProxySettings
) -> None:
    began = time.monotonic()
    outcome = deliver(fired(server.url("/sleep/3"), timeout_seconds=1), sender, settings)
    assert time.monotonic() - began < 2.5
    assert outcome["status"] == "timeout"
    assert outcome["error_kind"] == "timeout"
    assert outcome["status_code"] is None
    assert 900 <= outcome["latency_ms"] < 2500


def test_a_refused_connection_is_trigger_failed(
    sender: Urllib3Sender, settings: ProxySettings
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outcome = deliver(fired(f"http://127.0.0.1:{port}/"), sender, settings)
    assert outcome["status"] == "trigger_failed"
    assert outcome["error_kind"] == "connection_refused"
    assert outcome["status_code"] is None
    assert str(port) in outcome["error"]


def test_the_response_body_is_cut_to_4_kb(
    server: TargetServer, sender: Urllib3Sender, settings: ProxySettings
) -> None:
    outcome = deliver(fired(server.url("/big/10000")), sender, settings)
    assert outcome["status"] == "success"
    assert outcome["response_body"] == "x" * 4096
    assert outcome["response_body_truncated"] is True
    # The connection with an unread tail was dropped; the next call still works.
    assert deliver(fired(server.url("/ok")), sender, settings)["status"] == "success"


def test_a_body_of_exactly_4_kb_is_not_marked_truncated(
    server: TargetServer, sender: Urllib3Sender, settings: ProxySettings
) -> None:
    outcome = deliver(fired(server.url("/big/4096")), sender, settings)
    assert len(outcome["response_body"]) == 4096
    assert outcome["response_body_truncated"] is False


# --- redirects ------------------------------------------------------------------------------


def test_redirects_are_not_followed_by_default(
    server: TargetServer, sender: Urllib3Sender, settings: ProxySettings
) -> None:
    before = len(server.received)
    to = quote(server.url("/ok"), safe="")
    outcome = deliver(fired(server.url(f"/redirect?to={to}")), sender, settings)
    assert outcome["status"] == "failed" and outcome["status_code"] == 302
    assert outcome["response_headers"]["location"] == server.url("/ok")
    assert len(server.received) == before + 1


@pytest.mark.parametrize(
    "location",
    [
        "http://10.0.0.1/admin",
        "http://192.168.0.10/",
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://[fd00:ec2::254]/",
        "http://0x0a000001/",
        "http://[::ffff:10.0.0.1]/",
        "gopher://example.com/",
    ],
)
def test_a_followed_redirect_to_a_private_address_is_refused(
    location: str, server: TargetServer, sender: Urllib3Sender
) -> None:
    settings = secret_settings(proxy_follow_redirects="true")
    before = len(server.received)
    url = server.url(f"/redirect?to={quote(location, safe='')}")
    outcome = deliver(fired(url), sender, settings)
    assert outcome["status"] == "trigger_failed"
    assert outcome["error_kind"] == "unsafe_target"
    assert outcome["error"].startswith("redirect to ")
    assert outcome["status_code"] == 302
    assert len(server.received) == before + 1  # only the first hop was sent


def test_a_followed_redirect_is_called_when_it_passes_the_guard(
    server: TargetServer, sender: Urllib3Sender
) -> None:
    settings = secret_settings(proxy_follow_redirects="true")
    outcome = deliver(fired(server.url("/redirect?to=/landed&code=307")), sender, settings)
    assert outcome["status"] == "success" and outcome["redirects"] == 1
    assert server.received[-1].path == "/landed"
    assert server.received[-1].method == "POST"
    assert json.loads(server.received[-1].body) == {"full": True}


def test_a_303_turns_the_call_into_a_get_signed_without_the_body(
    server: TargetServer, sender: Urllib3Sender
) -> None:
    settings = secret_settings(proxy_follow_redirects="true")
    outcome = deliver(fired(server.url("/redirect?to=/seen&code=303")), sender, settings)
    assert outcome["status"] == "success"
    last = server.received[-1]
    assert (last.method, last.body) == ("GET", b"")
    assert Webhook(SECRET).verify(last.body, last.headers, json_parse=False) is None


def test_credentials_do_not_follow_a_redirect_to_another_origin(
    server: TargetServer, sender: Urllib3Sender
) -> None:
    settings = secret_settings(proxy_follow_redirects="true", allowed_target_hosts="other.test")
    elsewhere = f"http://other.test:{server.port}/elsewhere"
    event = fired(
        server.url(f"/redirect?to={quote(elsewhere, safe='')}"),
        headers={"Authorization": "Bearer secret", "X-Trace": "t1"},
    )
    resolve = fixed_resolver({"other.test": ["127.0.0.1"]})
    outcome = deliver(event, sender, settings, resolve=resolve)
    assert outcome["status"] == "success"
    first, second = server.received[-2:]
    assert first.headers["authorization"] == "Bearer secret"
    assert "authorization" not in second.headers
    assert second.headers["x-trace"] == "t1"
    assert second.headers["host"] == f"other.test:{server.port}"


def test_a_redirect_loop_stops(server: TargetServer, sender: Urllib3Sender) -> None:
    settings = secret_settings(proxy_follow_redirects="true")
    before = len(server.received)
    outcome = deliver(fired(server.url("/loop")), sender, settings)
    assert outcome["status"] == "trigger_failed"
    assert outcome["error_kind"] == "too_many_redirects"
    assert len(server.received) - before == settings.max_redirects + 1


# --- signing --------------------------------------------------------------------------------


def test_the_signature_verifies_with_standard_webhooks(
    server: TargetServer, sender: Urllib3Sender, settings: ProxySettings
) -> None:
    body = {"full": True, "city": "Zürich ✓"}
    deliver(fired(server.url("/signed"), body=body), sender, settings)
    request = server.received[-1]
    assert Webhook(SECRET).verify(request.body, request.headers) == body
    assert request.headers["webhook-id"] == f"{TASK_ID}:{SCHEDULED}:1"
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    tampered = request.body.replace(b"true", b"false")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD_SECRET).verify(request.body, request.headers)


def test_every_secret_in_rotation_signs(server: TargetServer, sender: Urllib3Sender) -> None:
    settings = secret_settings(signing_secret=f"{SECRET} {OLD_SECRET}")
    deliver(fired(server.url("/rotating")), sender, settings)
    request = server.received[-1]
    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    for secret in (SECRET, OLD_SECRET):
        assert Webhook(secret).verify(request.body, request.headers) == {"full": True}


def test_identity_headers_name_the_occurrence(
    server: TargetServer, sender: Urllib3Sender, settings: ProxySettings
) -> None:
    deliver(fired(server.url("/identity"), attempt=3), sender, settings)
    headers = server.received[-1].headers
    key = f"{TASK_ID}:{SCHEDULED}:3"
    assert headers["idempotency-key"] == key == headers["webhook-id"]
    assert headers["timebridge-task-id"] == TASK_ID
    assert headers["timebridge-scheduled-time"] == SCHEDULED
    assert headers["timebridge-attempt"] == "3"
    assert "timebridge-callback-url" not in headers


def test_the_occurrence_key_is_stable_across_redeliveries(
    server: TargetServer, sender: Urllib3Sender, settings: ProxySettings
) -> None:
    first = deliver(fired(server.url("/a"), execution_id="e-1"), sender, settings)
    again = deliver(
        fired(server.url("/a"), execution_id="e-2", delivery_attempt=2), sender, settings
    )
    retry = deliver(fired(server.url("/a"), attempt=2), sender, settings)
    assert first["occurrence_key"] == again["occurrence_key"]
    assert server.received[-3].headers["webhook-id"] == server.received[-2].headers["webhook-id"]
    assert retry["occurrence_key"] != first["occurrence_key"]


def test_the_scheduled_time_is_written_in_utc_whatever_its_offset() -> None:
    sender = RecordingSender()
    event = fired("https://hooks.example.com/")
    event["context"]["scheduled_time"] = "2026-11-23T18:00:00+09:00"
    outcome = handle(event, send=sender, settings=secret_settings(), resolve=public_resolver)
    assert outcome["scheduled_time"] == SCHEDULED
    assert outcome["occurrence_key"] == occurrence_key(TASK_ID, SCHEDULED, 1)


def test_task_headers_cannot_replace_the_proxy_headers(
    server: TargetServer, sender: Urllib3Sender, settings: ProxySettings
) -> None:
    forged = {
        "Idempotency-Key": "mine",
        "webhook-id": "mine",
        "Webhook-Signature": "v1,forged",
        "Timebridge-Attempt": "99",
        "Host": "evil.example",
    }
    deliver(fired(server.url("/forge"), headers=forged), sender, settings)
    request = server.received[-1]
    assert request.headers["idempotency-key"] == f"{TASK_ID}:{SCHEDULED}:1"
    assert request.headers["timebridge-attempt"] == "1"
    assert request.headers["host"] == f"127.0.0.1:{server.port}"
    assert Webhook(SECRET).verify(request.body, request.headers) == {"full": True}


def test_without_a_secret_requests_go_out_unsigned(
    server: TargetServer, sender: Urllib3Sender
) -> None:
    settings = ProxySettings.from_env({"TIMEBRIDGE_ALLOWED_TARGET_NETWORKS": "127.0.0.1/32"})
    assert deliver(fired(server.url("/plain")), sender, settings)["status"] == "success"
    headers = server.received[-1].headers
    assert "webhook-signature" not in headers and headers["webhook-id"]


# --- callback tokens ------------------------------------------------------------------------


def test_the_callback_url_carries_a_token_for_the_occurrence(
    server: TargetServer, sender: Urllib3Sender, settings: ProxySettings
) -> None:
    outcome = deliver(fired(server.url("/long-job"), callback=True), sender, settings)
    assert outcome["callback_enabled"] is True
    url = server.received[-1].headers["timebridge-callback-url"]
    prefix = f"{PUBLIC_URL}/v1/callbacks/"
    assert url.startswith(prefix)
    token = url.removeprefix(prefix)
    assert verify_callback_token(token, SECRET) == outcome["occurrence_key"]


def test_a_callback_token_round_trips() -> None:
    key = occurrence_key(TASK_ID, SCHEDULED, 2)
    token = make_callback_token(key, SECRET)
    assert verify_callback_token(token, SECRET) == key
    assert verify_callback_token(token, parse_signing_secrets(SECRET)) == key
    assert all(c.isalnum() or c in "-_." for c in token)  # safe in a URL path as is


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


def _forgeries() -> list[tuple[str, str]]:
    key = occurrence_key(TASK_ID, SCHEDULED, 1)
    token = make_callback_token(key, SECRET)
    encoded_key, _, mac = token.partition(".")
    other_key = make_callback_token(occurrence_key(TASK_ID, SCHEDULED, 2), SECRET).split(".")[0]
    return [
        ("mac changed", f"{encoded_key}.{_flip(mac, 5)}"),
        ("key changed", f"{_flip(encoded_key, 3)}.{mac}"),
        ("key swapped", f"{other_key}.{mac}"),
        ("other secret", make_callback_token(key, OLD_SECRET)),
        ("no mac", encoded_key),
        ("empty mac", f"{encoded_key}."),
        ("empty", ""),
        ("dot", "."),
        ("three parts", f"{token}.{mac}"),
        ("padding", f"{encoded_key}.{mac}="),
        ("not base64", f"{encoded_key}.{mac[:-2]}!!"),
        ("truncated mac", f"{encoded_key}.{mac[:-4]}"),
        ("plain key", f"{key}.{mac}"),
        ("huge", "A" * 5000 + "." + mac),
    ]


@pytest.mark.parametrize(("case", "token"), _forgeries(), ids=[c for c, _ in _forgeries()])
def test_a_forged_callback_token_is_rejected(case: str, token: str) -> None:
    assert verify_callback_token(token, SECRET) is None


def test_a_token_made_before_a_rotation_still_verifies() -> None:
    key = occurrence_key(TASK_ID, SCHEDULED, 1)
    old_token = make_callback_token(key, OLD_SECRET)
    assert verify_callback_token(old_token, f"{SECRET} {OLD_SECRET}") == key
    assert make_callback_token(key, f"{SECRET} {OLD_SECRET}") == make_callback_token(key, SECRET)


def test_a_webhook_signature_cannot_serve_as_a_callback_token() -> None:
    key = occurrence_key(TASK_ID, SCHEDULED, 1)
    encoded_key = make_callback_token(key, SECRET).split(".")[0]
    raw = parse_signing_secrets(SECRET)[0]
    plain_mac = hmac.new(raw, key.encode(), hashlib.sha256).digest()
    forged = encoded_key + "." + base64.urlsafe_b64encode(plain_mac).rstrip(b"=").decode()
    assert verify_callback_token(forged, SECRET) is None


def test_tokens_need_a_secret() -> None:
    with pytest.raises(SigningSecretError):
        make_callback_token("k", "")
    with pytest.raises(SigningSecretError):
        verify_callback_token("a.b", "")


def test_a_callback_task_without_a_secret_is_the_proxys_fault(server: TargetServer) -> None:
    settings = ProxySettings.from_env({"TIMEBRIDGE_ALLOWED_TARGET_NETWORKS": "127.0.0.0/8"})
    with pytest.raises(ProxyConfigurationError):
        handle(fired(server.url("/"), callback=True), send=never_send, settings=settings)


# --- the guard ------------------------------------------------------------------------------

UNSAFE_URLS = [
    # loopback, every spelling resolvers accept
    "http://127.0.0.1/",
    "http://127.0.0.2:8080/x",
    "http://localhost/",
    "http://LOCALHOST./",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0x7f.1/",
    "http://0X7F.0.0.1/",
    "http://017700000001/",
    "http://0177.0.0.1/",
    "http://0x7f.0x0.0x0.0x1/",
    "http://127.000.000.001/",
    "http://127.1/",
    "http://127.0.1/",
    "http://127。0。0。1/",
    "http://user:pass@127.0.0.1/",
    "http://example.com@127.0.0.1/",
    "http://[::1]/",
    "https://[::1]:8443/",
    "http://[0:0:0:0:0:0:0:1]/",
    # unspecified
    "http://0/",
    "http://0.0.0.0/",
    "http://[::]/",
    # IPv6 spellings of IPv4 addresses
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[0:0:0:0:0:ffff:a00:1]/",
    "http://[::127.0.0.1]/",
    "http://[::ffff:0:7f00:1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",
    # private, shared and link-local
    "http://10.0.0.1/",
    "http://10.255.255.254/",
    "http://172.16.5.4/",
    "http://172.31.255.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://100.127.255.254/",
    "http://169.254.1.1/",
    "http://[fc00::1]/",
    "http://[fd12:3456:789a::1]/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    "http://[fec0::1]/",
    # metadata
    "http://169.254.169.254/latest/meta-data/",
    "http://0xa9fea9fe/",
    "http://2852039166/",
    "http://[::ffff:169.254.169.254]/",
    "http://[fd00:ec2::254]/",
    "http://100.100.100.200/",
    "http://169.254.170.2/v2/credentials",
    "http://metadata.google.internal/computeMetadata/v1/",
    # multicast, reserved, documentation, benchmarking
    "http://224.0.0.1/",
    "http://239.255.255.250:1900/",
    "http://[ff02::1]/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://192.0.2.1/",
    "http://198.18.0.1/",
    "http://[2001:db8::1]/",
    # schemes and malformed hosts
    "ftp://example.com/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/",
    "javascript:alert(1)",
    "http:///no-host",
    "http://%31%32%37.0.0.1/",
    "http://256.1.1.1/",
    "http://1.2.3.4.5/",
    "http://[::1",
    "http://[v1.fe]/",
    "http://example.com:0/",
    "http://example.com:99999/",
    "http://exa mple.com/",
]


def test_at_least_thirty_unsafe_url_forms_are_covered() -> None:
    assert len(UNSAFE_URLS) == len(set(UNSAFE_URLS)) >= 30


@pytest.mark.parametrize("url", UNSAFE_URLS)
def test_an_unsafe_url_is_refused_by_default(url: str) -> None:
    outcome = handle(with_url(url), send=never_send, settings=ProxySettings())
    assert outcome["status"] == "trigger_failed"
    assert outcome["error_kind"] == "unsafe_target", outcome["error"]
    assert outcome["latency_ms"] is None


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://0251.0376.0251.0376/",
        "http://metadata.google.internal/",
        "http://imds.internal/",
    ],
)
def test_metadata_endpoints_are_refused_even_when_allow_listed(url: str) -> None:
    settings = ProxySettings.from_env(
        {
            "TIMEBRIDGE_ALLOWED_TARGET_NETWORKS": "0.0.0.0/0 ::/0 169.254.0.0/16",
            "TIMEBRIDGE_ALLOWED_TARGET_HOSTS": (
                "*.internal, 169.254.169.254, metadata.google.internal"
            ),
        }
    )
    resolve = fixed_resolver({"imds.internal": ["169.254.169.254"]})
    outcome = handle(with_url(url), send=never_send, settings=settings, resolve=resolve)
    assert outcome["error_kind"] == "unsafe_target"
    assert "metadata" in outcome["error"]


def public_resolver(host: str, port: int) -> Sequence[str]:
    return ["93.184.215.14"]


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://93.184.215.14/", "93.184.215.14"),
        ("https://[2606:4700:4700::1111]/", "2606:4700:4700::1111"),
        ("https://[::ffff:8.8.8.8]/", "::ffff:808:808"),
        ("http://1.1.1.1./", "1.1.1.1"),
        ("https://hooks.example.com/run", "93.184.215.14"),
        ("https://bücher.example/", "93.184.215.14"),
    ],
)
def test_a_public_target_passes_the_guard(url: str, address: str) -> None:
    sender = RecordingSender()
    outcome = handle(fired(url), send=sender, settings=ProxySettings(), resolve=public_resolver)
    assert outcome["status"] == "success"
    assert sender.requests[0].addresses == (address,)


@pytest.mark.parametrize(
    "answers",
    [["10.1.2.3"], ["93.184.215.14", "127.0.0.1"], ["::1"], ["fe80::1%eth0"], ["not-an-ip"]],
)
def test_a_name_that_resolves_to_a_private_address_is_refused(answers: list[str]) -> None:
    resolve = fixed_resolver({"hooks.example.com": answers})
    outcome = handle(
        fired("https://hooks.example.com/"),
        send=never_send,
        settings=ProxySettings(),
        resolve=resolve,
    )
    assert outcome["error_kind"] == "unsafe_target"
    assert answers[-1] not in outcome["error"]  # internal DNS is not told to tenants


def test_a_name_that_does_not_resolve_is_trigger_failed() -> None:
    outcome = handle(
        fired("https://does-not-exist.invalid/"), send=never_send, settings=ProxySettings()
    )
    assert (outcome["status"], outcome["error_kind"]) == ("trigger_failed", "dns_failure")


def test_the_connection_goes_to_the_address_that_was_checked() -> None:
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])  # a rebinding resolver
    calls: list[str] = []

    def rebinding(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        return next(answers)

    sender = RecordingSender()
    outcome = handle(
        fired("https://hooks.example.com/run"),
        send=sender,
        settings=ProxySettings(),
        resolve=rebinding,
    )
    assert outcome["status"] == "success"
    assert calls == ["hooks.example.com"]  # resolved once
    (request,) = sender.requests
    assert request.addresses == ("93.184.215.14",)
    assert (request.host, request.headers["Host"]) == ("hooks.example.com", "hooks.example.com")


def test_a_named_target_gets_its_own_host_header(
    server: TargetServer, sender: Urllib3Sender
) -> None:
    settings = secret_settings(allowed_target_networks="", allowed_target_hosts="*.internal")
    resolve = fixed_resolver({"hooks.svc.internal": ["127.0.0.1"]})
    url = f"http://hooks.svc.internal:{server.port}/named"
    outcome = deliver(fired(url), sender, settings, resolve=resolve)
    assert outcome["status"] == "success"
    assert server.received[-1].headers["host"] == f"hooks.svc.internal:{server.port}"


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("svc.internal", True),
        ("a.b.internal", True),
        ("internal", False),
        ("evilinternal", False),
        ("reports.corp", True),
        ("x.reports.corp", False),
    ],
)
def test_allow_listed_host_patterns(host: str, allowed: bool) -> None:
    settings = ProxySettings.from_env(
        {"TIMEBRIDGE_ALLOWED_TARGET_HOSTS": "*.internal,Reports.Corp."}
    )
    sender = RecordingSender()
    resolve = fixed_resolver({host: ["10.0.0.8"]})
    outcome = handle(fired(f"http://{host}/"), send=sender, settings=settings, resolve=resolve)
    assert (outcome["status"] == "success") is allowed


def test_an_allow_listed_network_admits_only_its_addresses() -> None:
    settings = ProxySettings.from_env({"TIMEBRIDGE_ALLOWED_TARGET_NETWORKS": "10.20.0.0/16"})
    sender = RecordingSender()
    assert handle(fired("http://10.20.3.4/"), send=sender, settings=settings)["status"] == (
        "success"
    )
    outcome = handle(fired("http://10.21.3.4/"), send=never_send, settings=settings)
    assert outcome["error_kind"] == "unsafe_target"


@pytest.mark.parametrize(
    "text",
    ["127.0.0.1", "2130706433", "0x7f.1", "017700000001", "127.1", "0", "0x", "08", "1.2.3.4.5"],
)
def test_numeric_hosts_are_read_like_inet_aton(text: str) -> None:
    expected = _inet_aton(text)
    assert parse_inet_aton(text) == expected


_LABELS = st.one_of(
    st.integers(0, 2**32).map(str),
    st.integers(0, 2**32).map(lambda n: f"0{n:o}"),
    st.integers(0, 2**32).map(lambda n: f"0x{n:x}"),
    st.sampled_from(["0x", "08", "09", "00", "0"]),
)


@given(st.lists(_LABELS, min_size=1, max_size=5))
def test_any_numeric_host_is_read_like_inet_aton(labels: list[str]) -> None:
    text = ".".join(labels)
    assert parse_inet_aton(text) == _inet_aton(text)


def _inet_aton(text: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


_SPECIAL_NETWORKS = [
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "::/96",
        "::ffff:0:0/96", "64:ff9b::/96", "100::/64", "2001::/23", "2001:db8::/32", "2002::/16",
        "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
]  # fmt: skip
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_ADDRESSES = st.one_of(
    st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
    st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
    st.sampled_from(_SPECIAL_NETWORKS).flatmap(
        lambda network: st.integers(0, network.num_addresses - 1).map(lambda i: network[i])
    ),
)


@given(_ADDRESSES)
def test_no_address_the_standard_library_calls_non_public_gets_through(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    judged: ipaddress.IPv4Address | ipaddress.IPv6Address = address
    if isinstance(address, ipaddress.IPv6Address):
        if int(address) >> 32 == 0:  # IPv4-compatible: deprecated, refused outright
            judged = ipaddress.IPv4Address(0)
        elif address in _NAT64:  # DNS64 answers in IPv6-only subnets: judged as IPv4
            judged = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        else:
            judged = address.ipv4_mapped or address.sixtofour or address
    if judged.is_global and not (judged.is_multicast or judged.is_reserved):
        return  # public by the standard library's account; the guard may be stricter
    url = f"http://{address}/" if address.version == 4 else f"http://[{address}]/"
    with pytest.raises(UnsafeTarget):
        check_target(url)


def test_an_injected_clock_stamps_the_outcome_and_the_signature() -> None:
    sender = RecordingSender()
    moment = 1795417200.25
    outcome = handle(
        fired("https://hooks.example.com/"),
        send=sender,
        settings=secret_settings(),
        clock=lambda: moment,
        resolve=public_resolver,
    )
    assert outcome["started_at"] == "2026-11-23T07:00:00.250000Z"
    assert sender.requests[0].headers["webhook-timestamp"] == "1795417200"


@pytest.mark.parametrize(
    ("url", "port", "host_header"),
    [
        ("http://93.184.215.14:8080/x", 8080, "93.184.215.14:8080"),
        ("https://[2606:4700::1111]:8443/", 8443, "[2606:4700::1111]:8443"),
        ("https://hooks.example.com/", 443, "hooks.example.com"),
        ("http://hooks.example.com/", 80, "hooks.example.com"),
    ],
)
def test_the_port_and_host_header_follow_the_url(url: str, port: int, host_header: str) -> None:
    checked = check_target(url, resolve=public_resolver)
    assert (checked.port, checked.host_header) == (port, host_header)


@pytest.mark.parametrize("url", ["http://hooks.example.com:+80/", "http://hooks.example.com:8o/"])
def test_a_port_that_is_not_a_number_is_refused(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_target(url, resolve=public_resolver)


def test_the_guard_returns_the_request_target_and_host_header() -> None:
    checked = check_target("https://Hooks.Example.com:8443/a/b?x=1#frag", resolve=public_resolver)
    assert checked.host == "hooks.example.com" and checked.port == 8443
    assert checked.request_target == "/a/b?x=1"
    assert checked.host_header == "hooks.example.com:8443"


# --- events that are not what they should be ------------------------------------------------


def _malformed_events() -> list[tuple[str, Any]]:
    good = fired("https://hooks.example.com/")

    def changed(path: str, value: Any) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(json.dumps(good))
        *parents, leaf = path.split(".")
        node: dict[str, Any] = event
        for name in parents:
            node = node[name]
        if value is _DELETE:
            del node[leaf]
        else:
            node[leaf] = value
        return event

    return [
        ("not an object", ["a", "list"]),
        ("not json", "{nope"),
        ("none", None),
        ("wrong version", changed("version", 2)),
        ("no task id", changed("task_id", _DELETE)),
        ("task id with a newline", changed("task_id", "abc\r\nX-Evil: 1")),
        ("attempt zero", changed("attempt", 0)),
        ("attempt as text", changed("attempt", "1")),
        (
            "placeholder left in",
            changed("context.scheduled_time", "<aws.scheduler.scheduled-time>"),
        ),
        ("naive time", changed("context.scheduled_time", "2026-11-23T09:00:00")),
        ("no context", changed("context", _DELETE)),
        ("target not an object", changed("target", "https://x")),
        ("no url", changed("target.url", _DELETE)),
        ("method unknown", changed("target.method", "TRACE")),
        ("header injection", changed("target.headers", {"X-A": "b\r\nHost: evil"})),
        ("header name", changed("target.headers", {"Bad Name": "x"})),
        ("header not text", changed("target.headers", {"X-A": 1})),
        ("query nested", changed("target.query", {"a": {"b": 1}})),
        ("timeout zero", changed("target.timeout_seconds", 0)),
        ("timeout text", changed("target.timeout_seconds", "30")),
        ("target type", changed("target.type", "sqs")),
        ("callback flag", changed("callback.enabled", "yes")),
        ("body not encodable", changed("target.body", "\ud800")),
    ]


_DELETE = object()


@pytest.mark.parametrize(
    ("case", "event"), _malformed_events(), ids=[c for c, _ in _malformed_events()]
)
def test_a_malformed_event_becomes_a_trigger_failed_outcome(case: str, event: Any) -> None:
    outcome = handle(event, send=never_send, settings=secret_settings())
    json.dumps(outcome)
    assert outcome["status"] == "trigger_failed"
    assert outcome["error_kind"] == "malformed_event"
    assert outcome["error"]


def test_a_malformed_event_keeps_what_identifies_it() -> None:
    event = fired("https://hooks.example.com/")
    event["target"]["method"] = "TRACE"
    outcome = handle(event, send=never_send, settings=secret_settings())
    assert (outcome["task_id"], outcome["attempt"]) == (TASK_ID, 1)
    assert outcome["scheduled_time"] == SCHEDULED and outcome["schedule_arn"] == ARN


def test_an_event_given_as_json_text_is_read(
    server: TargetServer, sender: Urllib3Sender, settings: ProxySettings
) -> None:
    outcome = deliver(json.dumps(fired(server.url("/text"))), sender, settings)
    assert outcome["status"] == "success"


# --- settings and the Lambda edge -----------------------------------------------------------


def test_settings_come_from_the_environment() -> None:
    settings = ProxySettings.from_env(
        {
            "TIMEBRIDGE_SIGNING_SECRET": f"{SECRET}  {OLD_SECRET}",
            "TIMEBRIDGE_PUBLIC_URL": "https://tb.example.com/",
            "TIMEBRIDGE_ALLOWED_TARGET_HOSTS": "a.internal, *.svc.local B.corp.",
            "TIMEBRIDGE_ALLOWED_TARGET_NETWORKS": "10.0.0.0/8,fd00::/8",
            "TIMEBRIDGE_PROXY_FOLLOW_REDIRECTS": "true",
        }
    )
    assert len(settings.signing_keys) == 2
    assert settings.public_url == "https://tb.example.com"
    assert settings.allowed_hosts == ("a.internal", "*.svc.local", "b.corp")
    assert [str(n) for n in settings.allowed_networks] == ["10.0.0.0/8", "fd00::/8"]
    assert settings.follow_redirects is True
    assert "timebridge-test" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SIGNING_SECRET", "not-a-secret"),
        ("SIGNING_SECRET", "whsec_!!!"),
        ("SIGNING_SECRET", "whsec_c2hvcnQ="),
        ("PUBLIC_URL", "ftp://x"),
        ("ALLOWED_TARGET_HOSTS", "*"),
        ("ALLOWED_TARGET_NETWORKS", "10.0.0.1/8"),
        ("PROXY_FOLLOW_REDIRECTS", "maybe"),
    ],
)
def test_malformed_settings_fail_at_start_up(name: str, value: str) -> None:
    with pytest.raises(ProxyConfigurationError):
        ProxySettings.from_env({f"TIMEBRIDGE_{name}": value})


def test_the_lambda_handler_reads_its_settings_from_the_environment(
    server: TargetServer,
) -> None:
    env = {
        **os.environ,
        "TIMEBRIDGE_ALLOWED_TARGET_NETWORKS": "127.0.0.0/8",
        "TIMEBRIDGE_SIGNING_SECRET": SECRET,
    }
    script = (
        "import json, sys\n"
        "from proxy_lambda.handler import handler\n"
        "print(json.dumps(handler(json.loads(sys.stdin.read()), None)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(fired(server.url("/from-lambda"))),
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=30,
        check=True,
    )
    assert json.loads(result.stdout)["status"] == "success"
    request = server.received[-1]
    assert Webhook(SECRET).verify(request.body, request.headers) == {"full": True}


def test_the_proxy_imports_only_the_standard_library_and_urllib3() -> None:
    script = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import proxy_lambda.handler\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(' '.join(sorted(new - set(sys.stdlib_module_names))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert set(result.stdout.split()) <= {"proxy_lambda", "urllib3"}


# --- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        # The HTTPS tests need a throwaway certificate; CI must run them, not skip them.
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("openssl is needed to make the test certificate")
        pytest.skip(reason="openssl is not installed, so no test certificate can be made")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=hooks.tls.internal",
            "-addext", "subjectAltName=DNS:hooks.tls.internal",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


def test_https_uses_the_host_name_for_sni_and_the_certificate(
    certificate: tuple[str, str],
) -> None:
    cert, key = certificate
    tls_server = TargetServer()
    tls_server.use_tls(cert, key)
    tls_server.start()
    try:
        settings = secret_settings(allowed_target_hosts="hooks.tls.internal")
        resolve = fixed_resolver({"hooks.tls.internal": ["127.0.0.1"]})
        url = f"https://hooks.tls.internal:{tls_server.port}/secure"
        looped = LoopSender(ca_certs=cert)
        for trusted in (Urllib3Sender(ca_certs=cert), looped):
            outcome = deliver(fired(url), trusted, settings, resolve=resolve)
            assert outcome["status"] == "success", outcome["error"]
            assert tls_server.server_names[-1] == "hooks.tls.internal"
            host = f"hooks.tls.internal:{tls_server.port}"
            assert tls_server.received[-1].headers["host"] == host
            # The certificate must match the name: an address literal does not.
            literal = deliver(
                fired(f"https://127.0.0.1:{tls_server.port}/"), trusted, settings, resolve=resolve
            )
            assert (literal["status"], literal["error_kind"]) == ("trigger_failed", "tls_error")
    finally:
        looped.close()
        tls_server.stop()
