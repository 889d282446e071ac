"""API keys: stored as SHA-256 hashes, looked up by hash, revocable. The bootstrap key from
settings becomes a system-admin key of the `default` tenant at start-up."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import ApiKey, Tenant
from service.domain.errors import Forbidden, Unauthorized

DEFAULT_TENANT = "default"
ROLES = ("viewer", "editor", "admin")
KEY_PREFIX = "tb_"


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    role: str
    key_id: str
    system_admin: bool = False
    subject: str | None = None  # "jwt:<sub>" for a JWT caller

    @property
    def actor(self) -> str:
        """Who did it, for the audit log."""
        return self.subject or f"key:{self.key_id}"

    def require(self, role: str) -> None:
        """Raise Forbidden unless this key's role is at least `role`."""
        if ROLES.index(self.role) < ROLES.index(role):
            raise Forbidden(f"this API key's role ({self.role}) may not do this; {role} may")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def ensure_tenant(sessions: sessionmaker[Session], name: str) -> str:
    with sessions() as session:
        existing = session.scalar(select(Tenant.id).where(Tenant.name == name))
        if existing is not None:
            return existing
        tenant = Tenant(id=str(uuid.uuid4()), name=name, created_at=datetime.now(UTC))
        session.add(tenant)
        try:
            session.commit()
        except IntegrityError:  # created concurrently
            session.rollback()
            found = session.scalar(select(Tenant.id).where(Tenant.name == name))
            assert found is not None
            return found
        return tenant.id


def install_key(
    sessions: sessionmaker[Session],
    key: str,
    *,
    tenant_name: str = DEFAULT_TENANT,
    role: str = "admin",
    system_admin: bool = False,
) -> str:
    """Store `key` (hashed) for the tenant, once; returns the key's id."""
    tenant_id = ensure_tenant(sessions, tenant_name)
    digest = hash_key(key)
    with sessions() as session:
        existing = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
        if existing is not None:
            return existing.id
        row = ApiKey(
            id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            key_hash=digest,
            role=role,
            system_admin=system_admin,
            created_at=datetime.now(UTC),
        )
        session.add(row)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            found = session.scalar(select(ApiKey.id).where(ApiKey.key_hash == digest))
            assert found is not None
            return found
        return row.id


# A verified key is trusted again without a lookup for this long: every request carries its key,
# and the lookup was a third of a create's own work. A revocation takes effect within it.
VERIFIED_TTL = 1.0
_verified: weakref.WeakKeyDictionary[sessionmaker[Session], dict[str, tuple[Principal, float]]]
_verified = weakref.WeakKeyDictionary()


def recently_authenticated(
    sessions: sessionmaker[Session], authorization: str | None
) -> Principal | None:
    """What `authenticate` returned for this exact header within VERIFIED_TTL, if anything."""
    if not authorization or len(authorization) > 600:
        return None
    found = _verified.get(sessions, {}).get(hash_key(authorization))
    if found is None or found[1] < time.monotonic():
        return None
    return found[0]


def forget_verified(sessions: sessionmaker[Session]) -> None:
    """Drop the memo (a key was revoked): this process refuses it from the next request."""
    _verified.pop(sessions, None)


def authenticate(
    sessions: sessionmaker[Session],
    authorization: str | None,
    *,
    jwt: JwtVerifier | None = None,
) -> Principal:
    """The principal behind `Authorization: Bearer <api key | JWT>`, or Unauthorized."""
    if not authorization:
        raise Unauthorized("missing Authorization header: send 'Authorization: Bearer <api key>'")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 4096:
        raise Unauthorized("malformed Authorization header: expected 'Bearer <api key>'")
    if jwt is not None and token.count(".") == 2 and not token.startswith(KEY_PREFIX):
        return _jwt_principal(sessions, jwt, token)
    digest = hash_key(token)
    with sessions() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if row is None or not hmac.compare_digest(row.key_hash, digest) or row.revoked_at is not None:
        raise Unauthorized("unknown or revoked API key")
    principal = Principal(
        tenant_id=row.tenant_id, role=row.role, key_id=row.id, system_admin=row.system_admin
    )
    verified = _verified.setdefault(sessions, {})
    if len(verified) > 1000:  # only valid keys get here; keep the memo small all the same
        verified.clear()
    verified[hash_key(authorization)] = (principal, time.monotonic() + VERIFIED_TTL)
    return principal


class JwtVerifier:
    """JWT bearer tokens signed by a key from a JWKS URL (RS256/ES256), with the tenant (its
    name) and role in claims. Settings: TIMEBRIDGE_JWT_JWKS_URL, _AUDIENCE, _ISSUER."""

    ALGORITHMS = ("RS256", "ES256")

    def __init__(
        self,
        jwks_url: str,
        *,
        audience: str | None = None,
        issuer: str | None = None,
        tenant_claim: str = "tenant",
        role_claim: str = "role",
    ) -> None:
        import jwt

        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=5)
        self.audience = audience
        self.issuer = issuer
        self.tenant_claim = tenant_claim
        self.role_claim = role_claim

    def verify(self, token: str) -> Mapping[str, Any]:
        import jwt

        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            claims: Mapping[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(self.ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        return claims


def _jwt_principal(sessions: sessionmaker[Session], verifier: JwtVerifier, token: str) -> Principal:
    claims = verifier.verify(token)
    tenant_name = claims.get(verifier.tenant_claim)
    role = claims.get(verifier.role_claim)
    if not isinstance(tenant_name, str) or role not in ROLES:
        raise Unauthorized(
            f"the token needs a {verifier.tenant_claim!r} claim and a {verifier.role_claim!r} "
            f"claim of {', '.join(ROLES)}"
        )
    with sessions() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.name == tenant_name))
    if tenant_id is None:
        raise Unauthorized("the token names an unknown tenant")
    subject = str(claims.get("sub"))[:120]
    return Principal(tenant_id=tenant_id, role=str(role), key_id="jwt", subject=f"jwt:{subject}")
