"""The proxy's settings, read from the environment (prefix TIMEBRIDGE_) once per cold start.

- SIGNING_SECRET: `whsec_<base64>` secrets, space separated (first one makes callback tokens).
  Without it requests go out unsigned and callback-enabled tasks cannot be delivered.
- PUBLIC_URL: base of callback links (default http://127.0.0.1:8000, like the API's).
- ALLOWED_TARGET_HOSTS: host names, exact or "*.suffix", comma or space separated, that may
  resolve to internal addresses. ALLOWED_TARGET_NETWORKS: CIDRs that may be called.
- PROXY_FOLLOW_REDIRECTS: true to follow redirects (each hop checked again); default false.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import NamedTuple

from proxy_lambda.guard import IPNetwork, is_host_name
from proxy_lambda.signing import parse_signing_secrets

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


class ProxyConfigurationError(ValueError):
    """A setting is malformed, or a task needs a setting that is missing (the proxy's fault)."""


class ProxySettings(NamedTuple):
    """Everything the proxy reads from its environment. Build with `from_env` in code and tests."""

    signing_keys: tuple[bytes, ...] = ()
    public_url: str = DEFAULT_PUBLIC_URL
    allowed_hosts: tuple[str, ...] = ()
    allowed_networks: tuple[IPNetwork, ...] = ()
    follow_redirects: bool = False
    max_redirects: int = 5
    body_limit: int = 4096

    def __repr__(self) -> str:
        # Keys never reach a log line.
        return (
            f"ProxySettings(signing_keys=<{len(self.signing_keys)} keys>, "
            f"public_url={self.public_url!r}, allowed_hosts={self.allowed_hosts!r}, "
            f"allowed_networks={tuple(str(n) for n in self.allowed_networks)!r}, "
            f"follow_redirects={self.follow_redirects})"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProxySettings:
        """Settings from `environ` (default os.environ); ProxyConfigurationError if malformed."""
        env = os.environ if environ is None else environ
        try:
            keys = parse_signing_secrets(env.get("TIMEBRIDGE_SIGNING_SECRET", ""))
        except ValueError as exc:
            raise ProxyConfigurationError(f"TIMEBRIDGE_SIGNING_SECRET: {exc}") from None
        public_url = env.get("TIMEBRIDGE_PUBLIC_URL", "").strip() or DEFAULT_PUBLIC_URL
        if not public_url.startswith(("http://", "https://")):
            raise ProxyConfigurationError("TIMEBRIDGE_PUBLIC_URL must start with http(s)://")
        hosts = tuple(
            item.lower().rstrip(".")
            for item in _split(env.get("TIMEBRIDGE_ALLOWED_TARGET_HOSTS", ""))
        )
        for host in hosts:
            if not is_host_name(host.removeprefix("*.")):
                raise ProxyConfigurationError(
                    f"TIMEBRIDGE_ALLOWED_TARGET_HOSTS: {host!r} is not a host name or *.suffix"
                )
        networks: list[IPNetwork] = []
        for item in _split(env.get("TIMEBRIDGE_ALLOWED_TARGET_NETWORKS", "")):
            try:
                networks.append(ipaddress.ip_network(item))
            except ValueError as exc:
                raise ProxyConfigurationError(
                    f"TIMEBRIDGE_ALLOWED_TARGET_NETWORKS: {exc}"
                ) from None
        follow = env.get("TIMEBRIDGE_PROXY_FOLLOW_REDIRECTS", "").strip().lower()
        if follow not in _TRUE | _FALSE:
            raise ProxyConfigurationError("TIMEBRIDGE_PROXY_FOLLOW_REDIRECTS must be true or false")
        return cls(
            signing_keys=keys,
            public_url=public_url.rstrip("/"),
            allowed_hosts=hosts,
            allowed_networks=tuple(networks),
            follow_redirects=follow in _TRUE,
        )


def _split(value: str) -> list[str]:
    return value.replace(",", " ").split()
