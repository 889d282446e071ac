"""The Lambda bundles: self-contained, holding only what runs on Lambda, reused when unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from infra.bundle import Bundles, api_spec, build_bundle, bundle_key, proxy_spec

HEALTH_PROBE = """
import json, sys
sys.path[:0] = [sys.argv[1]]
from service.main import handler
event = {
    "version": "2.0", "routeKey": "$default", "rawPath": "/health", "rawQueryString": "",
    "headers": {"host": "abc123.execute-api.eu-west-1.amazonaws.com", "accept": "*/*"},
    "requestContext": {
        "accountId": "111122223333", "apiId": "abc123", "stage": "$default",
        "domainName": "abc123.execute-api.eu-west-1.amazonaws.com", "domainPrefix": "abc123",
        "http": {"method": "GET", "path": "/health", "protocol": "HTTP/1.1",
                 "sourceIp": "203.0.113.7", "userAgent": "probe"},
        "requestId": "probe-1", "routeKey": "$default", "time": "23/Nov/2026:09:00:00 +0000",
        "timeEpoch": 1795424400000,
    },
    "isBase64Encoded": False,
}
response = handler(event, object())
outside = sorted({
    module.__file__ for module in list(sys.modules.values())
    if getattr(module, "__file__", None) and "site-packages" in module.__file__
})
print(json.dumps({"response": response, "outside": outside}))
"""

DEV_ONLY = (
    "pytest",
    "hypothesis",
    "moto",
    "aws_cdk",
    "jsii",
    "constructs",
    "cfnlint",
    "croniter",
    "schemathesis",
    "mypy",
    "ruff",
    "uvicorn",
    "typer",
    "httpx",
)


def test_api_bundle_answers_health_in_an_isolated_interpreter(
    api_bundle: Path, tmp_path: Path
) -> None:
    # -I: no user site, no PYTHON* variables, no current directory on the path; -S: no
    # site-packages at all. Only the bundle is importable, as on Lambda.
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", HEALTH_PROBE, str(api_bundle)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "TIMEBRIDGE_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["outside"] == []
    response = answer["response"]
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"status": "ok"}


def test_api_bundle_holds_the_service_and_no_dev_or_cdk_package(bundles: Bundles) -> None:
    names = {path.name.split("-")[0].lower() for path in bundles.api.iterdir()}
    assert {"service", "fastapi", "mangum", "sqlalchemy", "alembic", "psycopg"} <= names
    assert not names & set(DEV_ONLY)
    assert (bundles.api / "infra" / "functions" / "migrate.py").exists()
    assert not (bundles.api / "infra" / "stack.py").exists()  # CDK code stays out
    assert (bundles.api / "service/adapters/db/migrations/script.py.mako").exists()


def test_api_bundle_holds_linux_x86_64_binaries_only(bundles: Bundles) -> None:
    extensions = list(bundles.api.rglob("*.so"))
    assert extensions, "pydantic-core and psycopg-binary ship compiled code"
    assert all("x86_64-linux-gnu" in path.name or "cpython" not in path.name for path in extensions)
    assert not list(bundles.api.rglob("*.dylib")) and not list(bundles.api.rglob("*.pyd"))


def test_proxy_bundle_is_the_proxy_and_urllib3_only(bundles: Bundles) -> None:
    top = {path.name for path in bundles.proxy.iterdir()}
    packages = {name for name in top if not name.endswith(".dist-info")}
    assert packages == {"proxy_lambda", "urllib3"}


def test_sources_are_precompiled_for_the_read_only_file_system(bundles: Bundles) -> None:
    if sys.version_info[:2] != (3, 11):
        return  # .pyc files are only written by a 3.11 build
    compiled = list((bundles.proxy / "proxy_lambda" / "__pycache__").glob("*.cpython-311.pyc"))
    assert len(compiled) >= 5


def test_an_unchanged_bundle_is_reused_and_a_changed_source_rebuilds_it(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "proxy_lambda").mkdir(parents=True)
    (root / "proxy_lambda" / "__init__.py").write_text("VALUE = 1\n")
    (root / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = []\n')
    out = tmp_path / "out"
    spec = proxy_spec(root)
    assert spec.requirements == ()
    first = build_bundle(spec, out, root)
    marker = first / "marker"
    marker.write_text("kept")
    assert build_bundle(proxy_spec(root), out, root) == first
    assert marker.exists()  # reused, not rebuilt
    (root / "proxy_lambda" / "__init__.py").write_text("VALUE = 2\n")
    rebuilt = build_bundle(proxy_spec(root), out, root)
    assert not (rebuilt / "marker").exists()
    assert (rebuilt / "proxy_lambda" / "__init__.py").read_text() == "VALUE = 2\n"


def test_bundle_key_follows_requirements_and_sources() -> None:
    spec = api_spec()
    assert not any(name in " ".join(spec.requirements) for name in ("uvicorn", "typer"))
    assert bundle_key(spec) == bundle_key(api_spec())
    assert bundle_key(spec) != bundle_key(proxy_spec())
