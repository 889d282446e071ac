"""Reading a synthesized template as data: resources by type, functions by handler, policy
statements by role, so the tests say what they check rather than how to dig for it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Template = dict[str, Any]


def resources(template: Template, kind: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == kind
    }


def function_by_handler(template: Template, handler: str) -> tuple[str, dict[str, Any]]:
    found = [
        (logical_id, resource["Properties"])
        for logical_id, resource in resources(template, "AWS::Lambda::Function").items()
        if resource["Properties"].get("Handler") == handler
    ]
    assert len(found) == 1, f"{len(found)} functions run {handler}"
    return found[0]


def environment(template: Template, handler: str) -> dict[str, Any]:
    _, properties = function_by_handler(template, handler)
    variables: dict[str, Any] = properties.get("Environment", {}).get("Variables", {})
    return variables


def role_id(function: dict[str, Any]) -> str:
    role = function["Role"]
    assert "Fn::GetAtt" in role, role
    return str(role["Fn::GetAtt"][0])


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(template: Template, role: str | None = None) -> Iterator[dict[str, Any]]:
    """Allow statements of identity policies (of `role` only, when given)."""
    for policy in resources(template, "AWS::IAM::Policy").values():
        properties = policy["Properties"]
        roles = [item.get("Ref") for item in properties.get("Roles", [])]
        if role is not None and role not in roles:
            continue
        for statement in properties["PolicyDocument"]["Statement"]:
            if statement.get("Effect", "Allow") == "Allow":
                yield statement
    for role_id_, resource in resources(template, "AWS::IAM::Role").items():
        if role is not None and role_id_ != role:
            continue
        for inline in resource["Properties"].get("Policies", []):
            for statement in inline["PolicyDocument"]["Statement"]:
                if statement.get("Effect", "Allow") == "Allow":
                    yield statement


def actions_of(statement: dict[str, Any]) -> list[str]:
    return [str(action) for action in _as_list(statement["Action"])]


def resources_of(statement: dict[str, Any]) -> list[Any]:
    return _as_list(statement["Resource"])


def grants(template: Template, role: str, action: str) -> list[Any]:
    """Every resource `role` may do `action` on (wildcard actions count)."""
    found: list[Any] = []
    for statement in statements(template, role):
        for granted in actions_of(statement):
            prefix = granted.removesuffix("*")
            if granted == action or (granted.endswith("*") and action.startswith(prefix)):
                found.extend(resources_of(statement))
    return found


def mentions(value: Any, logical_id: str) -> bool:
    """True when a CloudFormation value refers to `logical_id` (Ref or GetAtt, anywhere)."""
    if isinstance(value, dict):
        if value.get("Ref") == logical_id:
            return True
        attribute = value.get("Fn::GetAtt")
        if isinstance(attribute, list) and attribute and attribute[0] == logical_id:
            return True
        return any(mentions(item, logical_id) for item in value.values())
    if isinstance(value, list):
        return any(mentions(item, logical_id) for item in value)
    return False
