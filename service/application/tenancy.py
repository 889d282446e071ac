"""Tenants, their API keys, and the audit log.

Who may do what:
- a system admin (the bootstrap key) creates and lists tenants and manages any tenant's keys;
- a tenant's admin manages that tenant's keys and reads its audit log;
- anyone else, and any caller naming another tenant's tenant or key, gets 404 (a tenant cannot
  even learn that another's ids exist) or 403 inside its own tenant.
Keys are shown once, at creation, and kept only as SHA-256 hashes; revocation is immediate
(every request looks its key up).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import ApiKey, AuditEvent, Tenant
from service.application.auth import ROLES, Principal, forget_verified, hash_key, new_key
from service.application.paging import is_uuid, newest_first, stamp
from service.domain.clock import Clock, utc_now
from service.domain.errors import Conflict, Forbidden, InvalidRequest, NotFound


def key_view(row: ApiKey) -> dict[str, Any]:
    return {
        "id": row.id,
        "tenant_id": row.tenant_id,
        "role": row.role,
        "system_admin": row.system_admin,
        "created_at": stamp(row.created_at),
        "revoked_at": stamp(row.revoked_at),
    }


def tenant_view(row: Tenant) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "created_at": stamp(row.created_at)}


class TenancyService:
    def __init__(self, sessions: sessionmaker[Session], *, clock: Clock = utc_now) -> None:
        self.sessions = sessions
        self.clock = clock

    # --- tenants -------------------------------------------------------------------------------

    def create_tenant(self, principal: Principal, name: str) -> dict[str, Any]:
        self._require_system_admin(principal)
        name = name.strip()
        if not 1 <= len(name) <= 255:
            raise InvalidRequest("name", "must be 1-255 characters")
        row = Tenant(id=str(uuid.uuid4()), name=name, created_at=self.clock())
        with self.sessions() as session:
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                raise Conflict(f"a tenant named {name!r} exists already") from None
            self._record(
                session,
                principal,
                "tenant.create",
                "tenant",
                row.id,
                {"name": name},
                tenant_id=row.id,
            )
            return tenant_view(row)

    def list_tenants(self, principal: Principal) -> list[dict[str, Any]]:
        self._require_system_admin(principal)
        with self.sessions() as session:
            rows = session.scalars(select(Tenant).order_by(Tenant.created_at, Tenant.id))
            return [tenant_view(row) for row in rows]

    # --- keys ----------------------------------------------------------------------------------

    def create_key(self, principal: Principal, tenant_id: str, role: str) -> dict[str, Any]:
        if role not in ROLES:
            raise InvalidRequest("role", f"must be one of {', '.join(ROLES)}")
        key = new_key()
        with self.sessions() as session:
            self._manageable(session, principal, tenant_id)
            row = ApiKey(
                id=str(uuid.uuid4()),
                tenant_id=tenant_id,
                key_hash=hash_key(key),
                role=role,
                system_admin=False,
                created_at=self.clock(),
            )
            session.add(row)
            session.flush()
            self._record(
                session,
                principal,
                "key.create",
                "key",
                row.id,
                {"role": role},
                tenant_id=tenant_id,
            )
            return {**key_view(row), "key": key}

    def list_keys(self, principal: Principal, tenant_id: str) -> list[dict[str, Any]]:
        with self.sessions() as session:
            self._manageable(session, principal, tenant_id)
            rows = session.scalars(
                select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at)
            )
            return [key_view(row) for row in rows]

    def revoke_key(self, principal: Principal, key_id: str) -> dict[str, Any]:
        with self.sessions() as session:
            row = session.get(ApiKey, key_id) if is_uuid(key_id) else None
            if row is None:
                raise NotFound(f"key {key_id} not found")
            self._manageable(session, principal, row.tenant_id, missing=f"key {key_id}")
            if row.revoked_at is None:
                row.revoked_at = self.clock()
                forget_verified(self.sessions)
                session.flush()
                self._record(
                    session, principal, "key.revoke", "key", row.id, {}, tenant_id=row.tenant_id
                )
            else:
                session.commit()
            return key_view(row)

    # --- audit ---------------------------------------------------------------------------------

    def record(
        self,
        principal: Principal,
        action: str,
        target_kind: str,
        target_id: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Note a change the caller made in its own tenant."""
        with self.sessions() as session:
            self._record(session, principal, action, target_kind, target_id, details or {})

    def _record(
        self,
        session: Session,
        principal: Principal,
        action: str,
        target_kind: str,
        target_id: str,
        details: Mapping[str, Any],
        *,
        tenant_id: str | None = None,
    ) -> None:
        session.add(
            AuditEvent(
                id=str(uuid.uuid4()),
                tenant_id=tenant_id or principal.tenant_id,
                actor=principal.actor,
                action=action,
                target_kind=target_kind,
                target_id=target_id,
                details=dict(details),
                created_at=self.clock(),
            )
        )
        session.commit()

    def list_audit(
        self, principal: Principal, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The caller's tenant's audit log, newest first (tenant admins only)."""
        principal.require("admin")
        query = select(AuditEvent).where(AuditEvent.tenant_id == principal.tenant_id)
        rows, next_cursor = newest_first(
            self.sessions, query, AuditEvent, limit=limit, cursor=cursor
        )
        items = [
            {
                "id": row.id,
                "actor": row.actor,
                "action": row.action,
                "target_kind": row.target_kind,
                "target_id": row.target_id,
                "details": row.details,
                "created_at": stamp(row.created_at),
            }
            for row in rows
        ]
        return items, next_cursor

    # --- rules ---------------------------------------------------------------------------------

    @staticmethod
    def _require_system_admin(principal: Principal) -> None:
        if not principal.system_admin:
            raise Forbidden("only a system administrator may manage tenants")

    @staticmethod
    def _manageable(
        session: Session, principal: Principal, tenant_id: str, *, missing: str | None = None
    ) -> None:
        what = missing or f"tenant {tenant_id}"
        if principal.system_admin:
            if not is_uuid(tenant_id) or session.get(Tenant, tenant_id) is None:
                raise NotFound(f"{what} not found")
            return
        if tenant_id != principal.tenant_id:
            raise NotFound(f"{what} not found")
        principal.require("admin")
