"""Header secrets at rest (issue "Tenants, roles and security hardening", item 3): AES-256-GCM
with a local key, or a KMS data key on AWS (moto)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from service.adapters.secrets import KmsEnvelopeCipher, LocalCipher, is_sealed


def test_local_cipher_round_trips_and_detects_tampering() -> None:
    cipher = LocalCipher(b"k" * 32)
    sealed = cipher.seal("Bearer abc")
    assert is_sealed(sealed) and "abc" not in sealed
    assert cipher.seal("Bearer abc") != sealed  # a fresh nonce each time
    assert cipher.open(sealed) == "Bearer abc"
    raw = bytearray(base64.b64decode(sealed.split(":", 2)[2]))
    raw[-1] ^= 1
    with pytest.raises(Exception):  # noqa: B017 - cryptography's InvalidTag
        cipher.open("enc:v1:" + base64.b64encode(bytes(raw)).decode())
    with pytest.raises(Exception):  # noqa: B017
        LocalCipher(b"x" * 32).open(sealed)
    with pytest.raises(ValueError, match="32 bytes"):
        LocalCipher(b"short")


@pytest.fixture
def kms(aws_env: None) -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("kms", region_name="us-east-1")


def test_kms_envelope_round_trips_across_processes(kms: Any) -> None:
    key_arn = kms.create_key(Description="timebridge test")["KeyMetadata"]["Arn"]
    writer = KmsEnvelopeCipher(key_arn, client=kms)
    sealed = [writer.seal(f"secret-{i}") for i in range(3)]
    assert all(value.startswith("enc:kms1:") and "secret" not in value for value in sealed)
    # A new process has no data key in memory: it unwraps the stored one with KMS.
    reader = KmsEnvelopeCipher(key_arn, client=kms)
    assert [reader.open(value) for value in sealed] == ["secret-0", "secret-1", "secret-2"]
