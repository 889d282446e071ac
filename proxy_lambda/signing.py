"""Standard Webhooks signatures and callback tokens, both keyed from TIMEBRIDGE_SIGNING_SECRET.

The setting holds one or more `whsec_<base64>` secrets separated by spaces. Every secret signs
each request (one `v1,` signature apiece), so receivers keep verifying while a secret rotates.
Callback tokens are made with the first secret and accepted under any of them; their key is
derived from the secret with a label of its own, so a webhook signature can never serve as a
token. The API verifies a token without a database read: the occurrence key travels inside it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 16
CALLBACK_TOKEN_LABEL = b"timebridge/callback-token/v1"
MAX_CALLBACK_TOKEN_LENGTH = 1024
_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

SigningSecret = str | Sequence[bytes]


class SigningSecretError(ValueError):
    """The signing secret setting is missing or not of the form `whsec_<base64>`."""


def parse_signing_secrets(text: str) -> tuple[bytes, ...]:
    """The keys in a space-separated list of `whsec_<base64>` secrets (empty text: no keys).

    Raises SigningSecretError for an item without the prefix, bad base64 or under 16 bytes.
    """
    keys: list[bytes] = []
    for item in text.split():
        if not item.startswith(SECRET_PREFIX):
            raise SigningSecretError(f"each signing secret must start with {SECRET_PREFIX}")
        encoded = item[len(SECRET_PREFIX) :]
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise SigningSecretError("a signing secret is not valid base64") from None
        if len(key) < MIN_SECRET_BYTES:
            raise SigningSecretError(
                f"a signing secret must hold at least {MIN_SECRET_BYTES} bytes"
            )
        keys.append(key)
    return tuple(keys)


def webhook_signature(keys: Sequence[bytes], message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: "v1,<base64 HMAC-SHA256>" per key, space separated."""
    signed = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    return " ".join(
        "v1," + base64.b64encode(hmac.digest(key, signed, "sha256")).decode("ascii") for key in keys
    )


def make_callback_token(occurrence_key: str, signing_secret: SigningSecret) -> str:
    """base64url(occurrence key) + "." + base64url(HMAC over it), made with the first secret.

    `signing_secret` is the setting's text or keys from `parse_signing_secrets`. Raises
    SigningSecretError when there is no secret.
    """
    keys = _keys(signing_secret)
    payload = occurrence_key.encode("utf-8")
    return _b64url(payload) + "." + _b64url(_token_mac(keys[0], payload))


def verify_callback_token(token: str, signing_secret: SigningSecret) -> str | None:
    """The occurrence key a genuine token carries, or None for a forged or malformed one.

    Accepts tokens made under any configured secret (rotation). Raises SigningSecretError when
    there is no secret to check against.
    """
    keys = _keys(signing_secret)
    if len(token) > MAX_CALLBACK_TOKEN_LENGTH:
        return None
    encoded_key, dot, encoded_mac = token.partition(".")
    payload = _b64url_decode(encoded_key)
    mac = _b64url_decode(encoded_mac) if dot else None
    if payload is None or mac is None:
        return None
    genuine = False
    for key in keys:
        # Every key is tried, so the time taken does not tell which one matched.
        genuine |= hmac.compare_digest(_token_mac(key, payload), mac)
    if not genuine:
        return None
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _keys(signing_secret: SigningSecret) -> Sequence[bytes]:
    keys = (
        parse_signing_secrets(signing_secret) if isinstance(signing_secret, str) else signing_secret
    )
    if not keys:
        raise SigningSecretError("TIMEBRIDGE_SIGNING_SECRET is not set")
    return keys


def _token_mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.digest(_token_key(secret), payload, "sha256")


@functools.lru_cache(maxsize=8)
def _token_key(secret: bytes) -> bytes:
    return hmac.digest(secret, CALLBACK_TOKEN_LABEL, "sha256")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes | None:
    """Strict unpadded base64url: one spelling per value, so tokens cannot be re-spelled."""
    if not text or not _URLSAFE.issuperset(text) or len(text) % 4 == 1:
        return None
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return data if _b64url(data) == text else None


def verify_webhook(
    keys: Sequence[bytes],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_seconds: int = 300,
) -> bool:
    """What a receiver checks: one of the `webhook-signature` values matches under one of the
    keys, and `webhook-timestamp` is within the tolerance of `now` (replays are refused).
    `headers` must have lower-case names."""
    message_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp", "")
    offered = headers.get("webhook-signature", "").split()
    if not message_id or not stamp.isdigit() or not offered:
        return False
    if abs(now - int(stamp)) > tolerance_seconds:
        return False
    wanted = webhook_signature(keys, message_id, int(stamp), body).split()
    return any(hmac.compare_digest(w, o) for w in wanted for o in offered)
