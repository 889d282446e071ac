"""Tenants, API keys and the audit log: thin HTTP translation (issue "Tenants, roles and
security hardening")."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import PrincipalDep, TenancyDep
from service.api.errors import error_responses

router = APIRouter(tags=["tenants"], responses=error_responses(401, 422, 429))


class TenantIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "payments"}]}
    )

    name: str = Field(min_length=1, max_length=255)


class TenantOut(BaseModel):
    id: str
    name: str
    created_at: str | None


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"role": "editor"}]})

    role: Literal["admin", "editor", "viewer"]


class KeyOut(BaseModel):
    id: str
    tenant_id: str
    role: str
    system_admin: bool
    created_at: str | None
    revoked_at: str | None


class NewKeyOut(KeyOut):
    key: str = Field(description="The key itself: shown this once, stored only as a hash")


class AuditOut(BaseModel):
    id: str
    actor: str
    action: str
    target_kind: str
    target_id: str
    details: dict[str, Any]
    created_at: str | None


class AuditPageOut(BaseModel):
    items: list[AuditOut]
    next_cursor: str | None


Id = Annotated[str, Path(max_length=64, description="A UUID")]


@router.post(
    "/v1/tenants", status_code=201, response_model=TenantOut, responses=error_responses(403, 409)
)
def create_tenant(body: TenantIn, principal: PrincipalDep, tenancy: TenancyDep) -> dict[str, Any]:
    """System administrators only."""
    return tenancy.create_tenant(principal, body.name)


@router.get("/v1/tenants", response_model=list[TenantOut], responses=error_responses(403))
def list_tenants(principal: PrincipalDep, tenancy: TenancyDep) -> list[dict[str, Any]]:
    """System administrators only."""
    return tenancy.list_tenants(principal)


@router.post(
    "/v1/tenants/{tenant_id}/keys",
    status_code=201,
    response_model=NewKeyOut,
    responses=error_responses(403, 404),
)
def create_key(
    tenant_id: Id, body: KeyIn, principal: PrincipalDep, tenancy: TenancyDep
) -> dict[str, Any]:
    """A new key for the tenant (its admins, or a system administrator)."""
    return tenancy.create_key(principal, tenant_id, body.role)


@router.get(
    "/v1/tenants/{tenant_id}/keys", response_model=list[KeyOut], responses=error_responses(403, 404)
)
def list_keys(tenant_id: Id, principal: PrincipalDep, tenancy: TenancyDep) -> list[dict[str, Any]]:
    return tenancy.list_keys(principal, tenant_id)


@router.delete("/v1/keys/{key_id}", response_model=KeyOut, responses=error_responses(403, 404))
def revoke_key(key_id: Id, principal: PrincipalDep, tenancy: TenancyDep) -> dict[str, Any]:
    """Revoke at once: the next request with the key is refused."""
    return tenancy.revoke_key(principal, key_id)


@router.get("/v1/audit", response_model=AuditPageOut, responses=error_responses(403))
def list_audit(
    principal: PrincipalDep,
    tenancy: TenancyDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
) -> dict[str, Any]:
    """Who changed what in this tenant, newest first (tenant admins)."""
    items, next_cursor = tenancy.list_audit(principal, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": next_cursor}
