"""etcd's own users, roles and permissions (its Auth service), over our channel.

    Permission      one grant of a role: read, write or readwrite on a key or on
                    every key under a prefix (etcd's range_end)
    Role            a role's name and its permissions, as etcd holds them
    Auth            the calls, on an ``Etcd`` (its channel, retries and error
                    translation): users (certificate users have no password), roles,
                    grants, ``enable``, and the converging ones kubeless uses:
                    ``ensure_user``, ``ensure_role`` (exactly these permissions),
                    ``ensure_user_roles`` (exactly these roles), ``remove_user``,
                    ``remove_role``; each can run again and again

With ``--client-cert-auth``, etcd takes a verified certificate's common name as
the user name, so a certificate user needs no password (``no_password``) and
no token: every request is checked against the user's roles as it arrives, so
a deleted user's next request is refused.

These are NOT KV transactions: etcd's auth store has no compare. The
``ensure_*`` calls read, then change only what differs, and tolerate losing a
race ("already exists", "not granted"): two managers converging the same user
end where both wanted. Only ``root`` (users holding etcd's ``root`` role) may
call them; anyone else gets ``Forbidden``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from aetcd import rpc

from .errors import Forbidden, StoreError
from .etcd import Etcd, prefix_end

log = logging.getLogger(__name__)

ROOT = "root"  # etcd's superuser and its all-powerful role
_KINDS = {"read": rpc.Permission.Type.READ, "write": rpc.Permission.Type.WRITE,
          "readwrite": rpc.Permission.Type.READWRITE}
_NAMES = {v: k for k, v in _KINDS.items()}


@dataclass(frozen=True, order=True)
class Permission:
    """``kind`` (read, write, readwrite) on ``key``, or on every key under it (``prefix``)."""

    key: str
    kind: str
    prefix: bool = False

    def range_end(self) -> bytes:
        return prefix_end(self.key) if self.prefix else b""

    def __str__(self) -> str:
        return f"{self.kind} {self.key}{'*' if self.prefix else ''}"


@dataclass(frozen=True)
class Role:
    name: str
    permissions: frozenset[Permission]


def _permission(pb: rpc.Permission) -> Permission:
    key = pb.key.decode()
    end = pb.range_end
    return Permission(key, _NAMES[pb.permType], prefix=bool(end) and end == prefix_end(key))


def _already(err: StoreError, what: str) -> bool:
    return what in str(err)


class Auth:
    """etcd's Auth service on ``etcd``'s channel."""

    def __init__(self, etcd: Etcd) -> None:
        self.etcd = etcd

    # -- state ------------------------------------------------------------

    async def enabled(self) -> bool | None:
        """Whether auth is on; None when this etcd cannot say (3.4 has no AuthStatus)."""
        try:
            resp = await self.etcd.auth_call("AuthStatus", rpc.AuthStatusRequest())
        except StoreError as err:
            if "unimplemented" in str(err).lower() or "unknown method" in str(err).lower():
                return None
            raise
        return bool(resp.enabled)

    async def enable(self) -> None:
        """Turn auth on (etcd wants a ``root`` user holding the ``root`` role first:
        ``ensure_root``); enabling it again is harmless."""
        await self.etcd.auth_call("AuthEnable", rpc.AuthEnableRequest())

    async def disable(self) -> None:
        await self.etcd.auth_call("AuthDisable", rpc.AuthDisableRequest())

    async def ensure_root(self) -> None:
        """etcd's ``root`` user, with no password (no one holds a certificate named
        ``root``: kubeless never signs that name), holding the ``root`` role."""
        await self.ensure_user(ROOT)
        await self.ensure_user_roles(ROOT, [ROOT])

    async def _add_role(self, name: str) -> None:
        try:
            await self.etcd.auth_call("RoleAdd", rpc.AuthRoleAddRequest(name=name))
        except Forbidden:
            raise
        except StoreError as err:
            if not _already(err, "role name already exists"):
                raise

    # -- users ------------------------------------------------------------

    async def users(self) -> list[str]:
        resp = await self.etcd.auth_call("UserList", rpc.AuthUserListRequest())
        return sorted(resp.users)

    async def user_roles(self, name: str) -> list[str] | None:
        """The roles of user ``name``; None when there is no such user."""
        if name not in await self.users():  # "user name not found" also means "not you"
            return None
        resp = await self.etcd.auth_call("UserGet", rpc.AuthUserGetRequest(name=name))
        return sorted(resp.roles)

    async def ensure_user(self, name: str) -> bool:
        """A certificate user ``name`` (no password); True when it was made now."""
        request = rpc.AuthUserAddRequest(name=name,
                                         options=rpc.UserAddOptions(no_password=True))
        try:
            await self.etcd.auth_call("UserAdd", request)
        except Forbidden:
            raise
        except StoreError as err:
            if _already(err, "user name already exists"):
                return False
            raise
        log.info("etcd: user %s added", name)
        return True

    async def ensure_user_roles(self, name: str, roles: Iterable[str]) -> None:
        """User ``name`` holds exactly ``roles`` (granted or revoked as needed)."""
        want = set(roles)
        have = set(await self.user_roles(name) or [])
        for role in sorted(want - have):
            await self.etcd.auth_call("UserGrantRole",
                                      rpc.AuthUserGrantRoleRequest(user=name, role=role))
            log.info("etcd: role %s granted to %s", role, name)
        for role in sorted(have - want):
            await self._revoke_role(name, role)

    async def _revoke_role(self, name: str, role: str) -> None:
        try:
            await self.etcd.auth_call("UserRevokeRole",
                                      rpc.AuthUserRevokeRoleRequest(name=name, role=role))
        except Forbidden:
            raise
        except StoreError as err:
            if not _already(err, "not granted"):
                raise
        log.info("etcd: role %s revoked from %s", role, name)

    async def remove_user(self, name: str) -> bool:
        """Delete user ``name`` (its certificate is refused from its next request on);
        True when it was there."""
        if name not in await self.users():
            return False
        try:
            await self.etcd.auth_call("UserDelete", rpc.AuthUserDeleteRequest(name=name))
        except Forbidden as err:
            if name not in await self.users():  # deleted meanwhile by another manager
                return False
            raise err
        log.info("etcd: user %s deleted", name)
        return True

    # -- roles ------------------------------------------------------------

    async def roles(self) -> list[str]:
        resp = await self.etcd.auth_call("RoleList", rpc.AuthRoleListRequest())
        return sorted(resp.roles)

    async def role(self, name: str) -> Role | None:
        """Role ``name`` and its permissions; None when there is no such role."""
        try:
            resp = await self.etcd.auth_call("RoleGet", rpc.AuthRoleGetRequest(role=name))
        except Forbidden:
            raise
        except StoreError as err:
            if _already(err, "role name not found"):
                return None
            raise
        return Role(name, frozenset(_permission(p) for p in resp.perm))

    async def ensure_role(self, name: str, permissions: Iterable[Permission]) -> None:
        """Role ``name`` with exactly ``permissions`` (made, granted, revoked as needed)."""
        want = frozenset(permissions)
        current = await self.role(name)
        if current is None:
            await self._add_role(name)
            current = await self.role(name)
        have = current.permissions if current is not None else frozenset()
        for perm in sorted(want - have):
            pb = rpc.Permission(permType=_KINDS[perm.kind], key=perm.key.encode(),
                                range_end=perm.range_end())
            await self.etcd.auth_call("RoleGrantPermission",
                                      rpc.AuthRoleGrantPermissionRequest(name=name, perm=pb))
        for perm in sorted(have - want):
            if any(w.key == perm.key and w.prefix == perm.prefix for w in want):
                continue  # granting the wanted kind replaced it
            await self._revoke_permission(name, perm)

    async def _revoke_permission(self, name: str, perm: Permission) -> None:
        request = rpc.AuthRoleRevokePermissionRequest(role=name, key=perm.key.encode(),
                                                      range_end=perm.range_end())
        try:
            await self.etcd.auth_call("RoleRevokePermission", request)
        except Forbidden:
            raise
        except StoreError as err:
            if not _already(err, "not granted"):
                raise

    async def remove_role(self, name: str) -> bool:
        """Delete role ``name`` (and its grants to users); True when it was there."""
        try:
            await self.etcd.auth_call("RoleDelete", rpc.AuthRoleDeleteRequest(role=name))
        except Forbidden:
            raise
        except StoreError as err:
            if _already(err, "role name not found"):
                return False
            raise
        log.info("etcd: role %s deleted", name)
        return True
