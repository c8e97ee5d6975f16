"""The signed-in user as every JSON answer shows it: /api/me, the sign-in's answer and
/api/auth/session (which adds NextAuth's `currentTenantId`). One builder, so the three cannot
drift apart."""

from __future__ import annotations

from typing import Any

from regcopilot.auth.identity import SessionUser


def user_json(user: SessionUser) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "tenantId": user.tenant_id,
        "tenantRole": user.tenant_role,
        "tenantName": user.tenant_name,
        "role": user.role,
    }
