"""Lambda code bundles built on this machine, without Docker.

Two bundles, one architecture (x86_64, CPython 3.11, manylinux2014 wheels only, which the
Lambda python3.11 runtime on Amazon Linux 2 can load):

- `api`: the `service` package, the migration hook (`infra.functions`) and the service's runtime
  dependencies from pyproject.toml, less the ones only a laptop uses (uvicorn, typer). It runs the
  API, the recorder, the sweeper and the migrations. No test, dev or CDK package goes in.
- `proxy`: the `proxy_lambda` package and urllib3, its one dependency.

A bundle is rebuilt only when its inputs change (requirements, platform, source files): the key
of the last build is kept beside it, and the pip install of the dependencies is cached apart
from the sources, so editing service code costs a copy, not a download. Sources are compiled to
unchecked-hash .pyc files, because Lambda's file system is read-only and would otherwise compile
every module on every cold start.

Run `python -m infra.bundle` to build both and print where they are.
"""

from __future__ import annotations

import compileall
import fcntl
import hashlib
import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLATFORM = "manylinux2014_x86_64"
PYTHON_VERSION = "3.11"
# Packages the service lists for a laptop that a Lambda function never imports.
# Needed by the local server and the CLI only (httpx is the CLI's client for the API).
NOT_ON_LAMBDA = frozenset({"uvicorn", "typer", "httpx"})
PROXY_REQUIREMENT_NAMES = ("urllib3",)
_SKIP_PARTS = frozenset({"__pycache__"})


@dataclass(frozen=True)
class BundleSpec:
    """What goes into one bundle: pip requirements and (package dir, files) source trees."""

    name: str
    requirements: tuple[str, ...]
    sources: tuple[Path, ...]  # files, relative to ROOT


@dataclass(frozen=True)
class Bundles:
    """Where the built bundles are (directories to hand to `lambda.Code.from_asset`)."""

    api: Path
    proxy: Path

    @property
    def api_version(self) -> str:
        """The build key of the API bundle: it changes whenever its contents may."""
        return bundle_version(self.api)


def bundle_version(directory: Path) -> str:
    """The key `build_bundle` wrote beside `directory`, or "unversioned" for a hand-made one."""
    key_file = directory.parent / f"{directory.name}.key"
    return key_file.read_text().strip() if key_file.exists() else "unversioned"


def requirement_name(requirement: str) -> str:
    """The normalized project name of a PEP 508 requirement ("psycopg[binary]>=3" -> psycopg)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def runtime_requirements(root: Path = ROOT) -> tuple[str, ...]:
    """The `[project] dependencies` of pyproject.toml, comments dropped."""
    with (root / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)["project"]
    return tuple(str(item) for item in project["dependencies"])


def _package_files(root: Path, package: str) -> Iterator[Path]:
    for path in sorted((root / package).rglob("*")):
        if path.is_file() and not _SKIP_PARTS & set(path.parts) and path.suffix != ".pyc":
            yield path.relative_to(root)


def api_spec(root: Path = ROOT) -> BundleSpec:
    requirements = tuple(
        item for item in runtime_requirements(root) if requirement_name(item) not in NOT_ON_LAMBDA
    )
    sources = (
        *_package_files(root, "service"),
        # The service delivers locally and checks callback tokens with the proxy's code.
        *_package_files(root, "proxy_lambda"),
        Path("infra/__init__.py"),
        *_package_files(root, "infra/functions"),
    )
    return BundleSpec("api", requirements, sources)


def proxy_spec(root: Path = ROOT) -> BundleSpec:
    requirements = tuple(
        item
        for item in runtime_requirements(root)
        if requirement_name(item) in PROXY_REQUIREMENT_NAMES
    )
    return BundleSpec("proxy", requirements, tuple(_package_files(root, "proxy_lambda")))


def _digest(parts: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:24]


def dependencies_key(spec: BundleSpec) -> str:
    header = json.dumps([PLATFORM, PYTHON_VERSION, sorted(spec.requirements)])
    return _digest([header.encode()])


def bundle_key(spec: BundleSpec, root: Path = ROOT) -> str:
    """Changes when anything that ends up in the bundle may change."""
    parts = [dependencies_key(spec).encode(), sys.version.split()[0].encode()]
    for source in spec.sources:
        parts.append(str(source).encode())
        parts.append((root / source).read_bytes())
    return _digest(parts)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # Test runs and `make synth` may build at the same time; one builds, the other waits.
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _install_dependencies(spec: BundleSpec, cache: Path) -> Path:
    target = cache / f"{spec.name}-{dependencies_key(spec)}"
    if (target / ".complete").exists():
        return target
    for stale in cache.glob(f"{spec.name}-*"):
        shutil.rmtree(stale)
    partial = cache / f".{spec.name}-partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    if spec.requirements:
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--platform",
            PLATFORM,
            "--implementation",
            "cp",
            "--python-version",
            PYTHON_VERSION,
            "--only-binary=:all:",
            "--target",
            str(partial),
            *spec.requirements,
        ]
        subprocess.run(command, check=True)
    # Console scripts are of no use on Lambda.
    shutil.rmtree(partial / "bin", ignore_errors=True)
    (partial / ".complete").touch()
    partial.rename(target)
    return target


def _compile(directory: Path) -> None:
    if sys.version_info[:2] != tuple(int(n) for n in PYTHON_VERSION.split(".")):
        return  # .pyc files of another Python version would be dead weight
    compileall.compile_dir(
        directory,
        quiet=2,
        workers=0,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )


def build_bundle(spec: BundleSpec, out: Path, root: Path = ROOT) -> Path:
    """Build (or reuse) the bundle `spec` under `out`; returns its directory."""
    destination = out / spec.name
    key = bundle_key(spec, root)
    key_file = out / f"{spec.name}.key"
    with _locked(out):
        if destination.is_dir() and key_file.exists() and key_file.read_text() == key:
            return destination
        dependencies = _install_dependencies(spec, out / ".dependencies")
        staging = out / f".{spec.name}-staging"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(dependencies, staging, ignore=shutil.ignore_patterns(".complete"))
        for source in spec.sources:
            (staging / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / source, staging / source)
        _compile(staging)
        key_file.unlink(missing_ok=True)
        shutil.rmtree(destination, ignore_errors=True)
        staging.rename(destination)
        key_file.write_text(key)
    return destination


def default_out(root: Path = ROOT) -> Path:
    """build/lambda in the repository, or TIMEBRIDGE_BUNDLE_DIR when set."""
    configured = os.environ.get("TIMEBRIDGE_BUNDLE_DIR")
    return Path(configured) if configured else root / "build" / "lambda"


def build_bundles(out: Path | None = None, root: Path = ROOT) -> Bundles:
    """Both bundles, built or reused."""
    out = out if out is not None else default_out(root)
    return Bundles(
        api=build_bundle(api_spec(root), out, root),
        proxy=build_bundle(proxy_spec(root), out, root),
    )


def directory_size(directory: Path) -> int:
    """Bytes in the files under `directory` (what Lambda counts against its unzipped limit)."""
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


if __name__ == "__main__":
    built = build_bundles()
    for name, path in (("api", built.api), ("proxy", built.proxy)):
        print(f"{name}: {path} ({directory_size(path) / 1e6:.1f} MB)")
