"""Header secrets at rest: AES-256-GCM on each secret header value of a task's target.

The `tasks.target` column (see `EncryptedTarget` in models) seals the values of secret headers
(Authorization, Cookie, X-Api-Key, Proxy-Authorization, and any the task lists in
`target.secret_headers`) on the way into the database and opens them on the way out, so the
rest of the service never handles ciphertext and no code path can forget to encrypt. Values are
written as `enc:v1:<base64 nonce + ciphertext>` (local key) or `enc:kms1:<base64 wrapped data
key>:<base64 nonce + ciphertext>` (KMS envelope); a value without the prefix is read as
plaintext (rows written before encryption existed).

Keys: `TIMEBRIDGE_SECRETS_KEY` (base64 of 32 bytes), else on AWS a data key from the KMS key
(`TIMEBRIDGE_KMS_KEY_ARN`), else with the local backend a development key kept beside the
database. The cipher is process-wide (`configure`), set once by the composition root.
"""

from __future__ import annotations

import base64
import os
import threading
from typing import Any, Protocol

LOCAL_PREFIX = "enc:v1:"
KMS_PREFIX = "enc:kms1:"


class SecretsUnavailable(RuntimeError):
    """No key to seal or open header secrets with."""


class Cipher(Protocol):
    def seal(self, plaintext: str) -> str: ...

    def open(self, sealed: str) -> str: ...


def _aesgcm(key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


AAD = b"timebridge/header-secret/v1"


class LocalCipher:
    """AES-256-GCM with a key from settings (or the development key file)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the secrets key must be 32 bytes (base64 of 32 random bytes)")
        self._aead = _aesgcm(key)

    @classmethod
    def from_text(cls, text: str) -> LocalCipher:
        try:
            key = base64.b64decode(text.strip() + "=" * (-len(text.strip()) % 4), validate=True)
        except ValueError:
            raise ValueError("TIMEBRIDGE_SECRETS_KEY must be base64") from None
        return cls(key)

    def seal(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), AAD)
        return LOCAL_PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, sealed: str) -> str:
        if not sealed.startswith(LOCAL_PREFIX):
            raise SecretsUnavailable("this value was not sealed with the local key")
        raw = base64.b64decode(sealed[len(LOCAL_PREFIX) :])
        return str(self._aead.decrypt(raw[:12], raw[12:], AAD).decode())


class KmsEnvelopeCipher:
    """A data key from KMS (GenerateDataKey, once a process), wrapped copy stored with each
    value; opening unwraps with KMS Decrypt, cached per wrapped key."""

    def __init__(self, key_arn: str, *, client: Any = None) -> None:
        self.key_arn = key_arn
        self._client = client
        self._lock = threading.Lock()
        self._current: tuple[bytes, str] | None = None  # (plaintext key, wrapped key b64)
        self._opened: dict[str, Any] = {}

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("kms")
        return self._client

    def seal(self, plaintext: str) -> str:
        with self._lock:
            if self._current is None:
                answer = self.client.generate_data_key(KeyId=self.key_arn, KeySpec="AES_256")
                wrapped = base64.b64encode(answer["CiphertextBlob"]).decode()
                self._current = (answer["Plaintext"], wrapped)
                self._opened[wrapped] = _aesgcm(answer["Plaintext"])
            _, wrapped = self._current
            aead = self._opened[wrapped]
        nonce = os.urandom(12)
        sealed = aead.encrypt(nonce, plaintext.encode(), AAD)
        return f"{KMS_PREFIX}{wrapped}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str) -> str:
        wrapped, _, body = sealed[len(KMS_PREFIX) :].partition(":")
        with self._lock:
            aead = self._opened.get(wrapped)
        if aead is None:
            answer = self.client.decrypt(CiphertextBlob=base64.b64decode(wrapped))
            aead = _aesgcm(answer["Plaintext"])
            with self._lock:
                self._opened[wrapped] = aead
        raw = base64.b64decode(body)
        return str(aead.decrypt(raw[:12], raw[12:], AAD).decode())


_cipher: Cipher | None = None


def configure(cipher: Cipher | None) -> None:
    """Set the process's cipher (the composition root does, once)."""
    global _cipher
    _cipher = cipher


def current() -> Cipher:
    if _cipher is None:
        raise SecretsUnavailable(
            "no secrets key: set TIMEBRIDGE_SECRETS_KEY or TIMEBRIDGE_KMS_KEY_ARN"
        )
    return _cipher


def is_sealed(value: str) -> bool:
    return value.startswith((LOCAL_PREFIX, KMS_PREFIX))


def new_key_text() -> str:
    return base64.b64encode(os.urandom(32)).decode()
