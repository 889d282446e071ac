"""The SSRF guard: may this URL be called, and at which addresses?

A target passes when its scheme is http or https and every address its host resolves to is a
public unicast address, unless the host name or the address is allow-listed. Cloud metadata
endpoints are refused even when allow-listed. Numeric spellings that resolvers accept for IPv4
(2130706433, 0x7f.1, 017700000001, 127.1) are read the way inet_aton reads them, and IPv6 forms
that carry an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by that address. The
caller connects to the returned addresses and nothing else, so a second DNS answer (rebinding)
never reaches a socket.

Raises `UnsafeTarget` for anything refused, `ResolutionFailed` when a name does not resolve.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import NamedTuple
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

DEFAULT_PORTS = {"http": 80, "https": 443}

# Refused whatever the allow-list says: instance metadata and credential endpoints.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(text)
    for text in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog"})
_METADATA_NUMBERS = frozenset((address.version, int(address)) for address in METADATA_ADDRESSES)

# Named so that a refusal says why. Kept as integer ranges: checked on every call.
_BLOCKED_CIDRS = (
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a carrier-grade NAT address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "an IETF protocol address"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a 6to4 relay address"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("::/8", "a reserved address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("100::/64", "a discard-only address"),
    ("2001::/23", "an IETF protocol address"),
    ("2001:db8::/32", "a documentation address"),
    ("fc00::/7", "a unique local (private) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
)


def _span(cidr: str) -> tuple[int, int, int]:
    network = ipaddress.ip_network(cidr)
    return network.version, int(network.network_address), int(network.broadcast_address)


_SPANS = [(*_span(cidr), reason) for cidr, reason in _BLOCKED_CIDRS]
_BLOCKED = {
    version: tuple((low, high, reason) for v, low, high, reason in _SPANS if v == version)
    for version in (4, 6)
}
# IPv6 outside 2000::/3 (global unicast) is local, multicast or unassigned.
_GLOBAL_UNICAST_V6 = _span("2000::/3")[1:]
_NAT64 = _span("64:ff9b::/96")[1:]
_DIGITS = frozenset("0123456789")
_HEX_DIGITS = frozenset("0123456789abcdef")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


class UnsafeTarget(Exception):
    """The URL may not be called: bad scheme or host, or an address that is not public."""


class ResolutionFailed(Exception):
    """The host name did not resolve to any address."""


class CheckedTarget(NamedTuple):
    """A URL that passed the guard, with the only addresses a connection may use."""

    scheme: str
    host: str  # ASCII, lower case, no brackets: the name for SNI and the certificate
    port: int
    addresses: tuple[str, ...]
    request_target: str  # path and query, as sent on the request line
    host_header: str


def resolve_host(host: str, port: int) -> list[str]:
    """The host's IPv4/IPv6 addresses in resolver order; ResolutionFailed when there are none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise ResolutionFailed(f"{host} does not resolve: {exc}") from None
    addresses: list[str] = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in addresses:
            addresses.append(str(sockaddr[0]))
    if not addresses:
        raise ResolutionFailed(f"{host} has no IPv4 or IPv6 address")
    return addresses


def host_is_allowed(host: str, patterns: Sequence[str]) -> bool:
    """True when `host` equals a pattern or, for "*.suffix", ends with ".suffix"."""
    for pattern in patterns:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


def check_target(
    url: str,
    *,
    allowed_hosts: Sequence[str] = (),
    allowed_networks: Sequence[IPNetwork] = (),
    resolve: Resolver = resolve_host,
) -> CheckedTarget:
    """Check `url` and resolve its host once; the result names the addresses to connect to.

    Raises UnsafeTarget when the URL is refused, ResolutionFailed when its host does not resolve.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise UnsafeTarget(f"the URL cannot be parsed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UnsafeTarget(f"scheme {scheme or '(none)'!r} is not allowed; use http or https")
    request_target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if " " in request_target or not request_target.isprintable():
        raise UnsafeTarget("the URL's path or query holds spaces or control characters")
    host, literal, port_text = _parse_host(parts.netloc)
    if not port_text:
        port = DEFAULT_PORTS[scheme]
    elif port_text.isdigit() and port_text.isascii() and 0 < int(port_text) <= 65535:
        port = int(port_text)
    else:
        raise UnsafeTarget(f"port {port_text[:16]!r} is not a number 1-65535")
    if host in METADATA_HOSTS:
        raise UnsafeTarget(f"{host} is a cloud metadata endpoint")
    named_allowed = bool(allowed_hosts) and host_is_allowed(host, allowed_hosts)
    if literal is not None:
        reason = _refusal(literal, named_allowed, allowed_networks)
        if reason:
            raise UnsafeTarget(f"{host} is {reason}")
        addresses: tuple[str, ...] = (host,)
    else:
        answers = tuple(resolve(host, port))
        if not answers:
            raise ResolutionFailed(f"{host} has no address")
        for answer in answers:
            address = _resolved_address(answer)
            # The address is not echoed: outcomes reach tenants, internal DNS should not.
            if address is None:
                raise UnsafeTarget(f"{host} resolves to an address that cannot be checked")
            reason = _refusal(address, named_allowed, allowed_networks)
            if reason:
                raise UnsafeTarget(f"{host} resolves to {reason}")
        addresses = answers
    shown = f"[{host}]" if literal is not None and literal.version == 6 else host
    host_header = f"{shown}:{port}" if port_text else shown
    return CheckedTarget(scheme, host, port, addresses, request_target, host_header)


def _parse_host(netloc: str) -> tuple[str, IPAddress | None, str]:
    """The canonical host, the address itself for an address literal, and the port as written."""
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        inside, _, after = hostport[1:].partition("]")
        if after and not after.startswith(":"):
            raise UnsafeTarget("text follows the IPv6 address")
        if "%" in inside:
            raise UnsafeTarget("IPv6 zone identifiers are not allowed")
        try:
            address = ipaddress.IPv6Address(inside)
        except ValueError:
            raise UnsafeTarget(f"[{inside}] is not an IPv6 address") from None
        return address.compressed, address, after[1:]
    text, _, port_text = hostport.partition(":")
    if not text:
        raise UnsafeTarget("the URL has no host")
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError:
            raise UnsafeTarget("the host name is not a valid internationalised name") from None
    text = text.lower()
    if text.endswith("."):
        text = text[:-1]
    if text[-1:] in _DIGITS:
        try:
            # The usual dotted quad, read strictly by the C library; other spellings go on.
            quad = ipaddress.IPv4Address(socket.inet_pton(socket.AF_INET, text))
        except OSError:
            pass
        else:
            if str(quad) == text:
                return text, quad, port_text
    labels = text.split(".")
    if all(_numeric_label(label) for label in labels):
        ipv4 = parse_inet_aton(text)
        if ipv4 is None:
            raise UnsafeTarget(f"{text} is a numeric host but not a valid IPv4 address")
        return str(ipv4), ipv4, port_text
    if not is_host_name(text):
        raise UnsafeTarget(f"{text!r} is not a valid host name")
    return text, None, port_text


def is_host_name(text: str) -> bool:
    """A lower-case ASCII DNS name: labels of 1-63 letters, digits, '-' or '_', not starting
    with '-', 253 characters at most."""
    if not 0 < len(text) <= 253:
        return False
    for label in text.split("."):
        if not 0 < len(label) <= 63 or label[0] == "-" or not _NAME_CHARS.issuperset(label):
            return False
    return True


def _numeric_label(label: str) -> bool:
    """Would inet_aton read this label as a number (valid or not)?"""
    if label.startswith("0x"):
        return _HEX_DIGITS.issuperset(label[2:])
    return bool(label) and _DIGITS.issuperset(label)


def parse_inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """IPv4 the way inet_aton reads it: 1-4 parts, each decimal, 0-octal or 0x-hex, the last
    part filling the remaining bytes. None when inet_aton would refuse it."""
    labels = text.lower().split(".")
    if not 1 <= len(labels) <= 4 or not all(_numeric_label(label) for label in labels):
        return None
    values: list[int] = []
    for label in labels:
        try:
            if label.startswith("0x"):
                values.append(int(label[2:], 16))
            elif len(label) > 1 and label.startswith("0"):
                values.append(int(label, 8))
            else:
                values.append(int(label, 10))
        except ValueError:
            return None  # "0x" alone, or 8 and 9 in an octal label
    *head, last = values
    if any(value > 255 for value in head) or last >= 256 ** (4 - len(head)):
        return None
    number = last
    for index, value in enumerate(head):
        number |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def _resolved_address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None  # e.g. a scoped link-local answer; never worth the risk


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 spelling reaches: mapped, compatible, NAT64 or 6to4."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    number = int(address)
    if (number >> 32 == 0 and number > 1) or _NAT64[0] <= number <= _NAT64[1]:
        return ipaddress.IPv4Address(number & 0xFFFFFFFF)
    return address.sixtofour


def _refusal(
    address: IPAddress, named_allowed: bool, allowed_networks: Sequence[IPNetwork]
) -> str | None:
    """Why `address` may not be called, or None when it may."""
    candidates: list[IPAddress] = [address]
    if address.version == 6:
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            candidates.append(embedded)
    for candidate in candidates:
        if (candidate.version, int(candidate)) in _METADATA_NUMBERS:
            return "a cloud metadata endpoint (never allowed)"
    if named_allowed:
        return None
    for network in allowed_networks:
        for candidate in candidates:
            if candidate.version == network.version and candidate in network:
                return None
    # An IPv6 spelling of an IPv4 address is judged by the IPv4 address it reaches.
    judged = candidates[-1]
    number = int(judged)
    for low, high, reason in _BLOCKED[judged.version]:
        if low <= number <= high:
            return reason
    if judged.version == 6 and not _GLOBAL_UNICAST_V6[0] <= number <= _GLOBAL_UNICAST_V6[1]:
        return "not a global unicast address"
    if address.version == 6 and int(address) >> 32 == 0:
        return "an IPv4-compatible IPv6 address (deprecated, never routed as IPv4)"
    # Whatever the table misses, the standard library's view of "global" still catches.
    if judged.is_multicast or judged.is_reserved or judged.is_private or not judged.is_global:
        return "a non-public address"
    return None
