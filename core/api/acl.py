"""ACLs on the REST API: the check every request passes when they are on, and the
``/v1/acl/...`` routes (Dkron Pro's policy routes; tokens and bootstrap are ours).

A request's token is ``Authorization: Bearer <secret>`` (Dkron Pro's UI) or
``X-Dkron-Token: <secret>`` (Dkron Pro's OpenAPI). Its policies are matched against the
request path with the capability its method needs: GET ``read`` (or ``list`` on a
collection), POST ``create``, PUT/PATCH ``update``, DELETE ``delete``. ``/health`` and
ACL bootstrap are open; the other ``/v1/acl`` routes need a management token.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from core.acl import AclService, IssuedToken, PolicyError, Refusal
from core.store.commands import AclPolicy, AclToken
from core.store.state import NotFound, StoreError

__all__ = ["ACL_ROUTES", "refusal", "token_json"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ACL: web.AppKey[AclService] = web.AppKey("acl", AclService)

_OPEN = frozenset({"/health", "/v1/acl/bootstrap"})
_COLLECTIONS = frozenset(
    {"/v1/jobs", "/v1/members", "/v1/busy", "/v1/acl/policies", "/v1/acl/tokens"}
)
_BY_METHOD = {
    "GET": ("read",),
    "HEAD": ("read",),
    "POST": ("create",),
    "PUT": ("update",),
    "PATCH": ("update",),
    "DELETE": ("delete",),
}


def _secret(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-Dkron-Token", "").strip() or None


def _policy_path(request: web.Request) -> str:
    path = request.path
    if len(path) > 1:
        path = path.rstrip("/")
    # The live-output stream reads its execution: the execution's rule covers it.
    return path.removesuffix("/stream") if path.endswith("/stream") else path


def refusal(acl: AclService, request: web.Request) -> Refusal | None:
    """Why this request may not proceed (None: it may)."""
    if not acl.enabled or request.path in _OPEN:
        return None
    path = _policy_path(request)
    secret = _secret(request)
    if path == "/v1/acl/token/self":
        if acl.resolve(secret) is not None:
            return None
        return acl.check(secret, None, ("read",))  # says 401 and why
    if path.startswith("/v1/acl"):
        return acl.check(secret, None, ("read",))
    capabilities: tuple[str, ...] = _BY_METHOD.get(request.method, ("read",))
    if request.method == "GET" and (path in _COLLECTIONS or path.endswith("/executions")):
        capabilities = ("read", "list")
    return acl.check(secret, path, capabilities)


def refused(found: Refusal) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="dkron"'} if found.status == 401 else None
    return web.Response(status=found.status, text=found.reason, headers=headers)


# -- routes ----------------------------------------------------------------------------------


def _json(value: object, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=lambda v: json.dumps(v, indent=None))


def policy_json(policy: AclPolicy) -> dict[str, Any]:
    return {"name": policy.name, "rules": json.loads(policy.rules)}


def token_json(token: AclToken, secret: str | None = None) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "accessor_id": token.accessor_id,
        "name": token.name,
        "type": token.type,
        "policies": list(token.policies),
        "create_time": token.create_time.isoformat().replace("+00:00", "Z"),
    }
    if secret is not None:
        shown["secret"] = secret
    return shown


def _issued(issued: IssuedToken) -> web.Response:
    return _json(token_json(issued.token, issued.secret), status=201)


async def _write(request: web.Request, work: Awaitable[Any]) -> Any:
    if not request.app[ACL].enabled:
        raise web.HTTPBadRequest(text="ACLs are not enabled on this server (acl: {enabled: true})")
    try:
        return await work
    except PolicyError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    except NotFound as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    except StoreError as exc:
        raise web.HTTPConflict(text=str(exc)) from None


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"the body is not JSON: {exc}") from None


async def bootstrap(request: web.Request) -> web.StreamResponse:
    issued: IssuedToken = await _write(request, request.app[ACL].bootstrap())
    return _issued(issued)


async def list_policies(request: web.Request) -> web.StreamResponse:
    return _json([policy_json(p) for p in request.app[ACL].policies()])


async def get_policy(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    policy = request.app[ACL].policy(name)
    if policy is None:
        raise web.HTTPNotFound(text=f"ACL policy {name!r} not found")
    return _json(policy_json(policy))


async def apply_policy(request: web.Request) -> web.StreamResponse:
    document = await _body(request)
    policy: AclPolicy = await _write(
        request, request.app[ACL].apply_policy(request.match_info["name"], document)
    )
    return _json(policy_json(policy))


async def delete_policy(request: web.Request) -> web.StreamResponse:
    await _write(request, request.app[ACL].delete_policy(request.match_info["name"]))
    return web.Response(status=204)


async def list_tokens(request: web.Request) -> web.StreamResponse:
    return _json([token_json(t) for t in request.app[ACL].tokens()])


async def create_token(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='expected {"name": ..., "type": ..., "policies": [...]}')
    policies = body.get("policies") or []
    if not isinstance(policies, list) or not all(isinstance(p, str) for p in policies):
        raise web.HTTPBadRequest(text="policies must be a list of policy names")
    issued: IssuedToken = await _write(
        request,
        request.app[ACL].create_token(
            str(body.get("name", "")), str(body.get("type") or "client"), policies
        ),
    )
    return _issued(issued)


async def get_token(request: web.Request) -> web.StreamResponse:
    token = request.app[ACL].token(request.match_info["accessor"])
    if token is None:
        raise web.HTTPNotFound(text="ACL token not found")
    return _json(token_json(token))


async def own_token(request: web.Request) -> web.StreamResponse:
    token = request.app[ACL].resolve(_secret(request))
    if token is None:  # only reachable with ACLs off
        raise web.HTTPNotFound(text="no ACL token in this request")
    return _json(token_json(token))


async def delete_token(request: web.Request) -> web.StreamResponse:
    await _write(request, request.app[ACL].delete_token(request.match_info["accessor"]))
    return web.Response(status=204)


ACL_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("POST", "/v1/acl/bootstrap", bootstrap),
    ("GET", "/v1/acl/policies", list_policies),
    ("GET", "/v1/acl/policies/{name}", get_policy),
    ("POST", "/v1/acl/policies/{name}", apply_policy),
    ("DELETE", "/v1/acl/policies/{name}", delete_policy),
    ("GET", "/v1/acl/tokens", list_tokens),
    ("POST", "/v1/acl/tokens", create_token),
    ("GET", "/v1/acl/token/self", own_token),
    ("GET", "/v1/acl/tokens/{accessor}", get_token),
    ("DELETE", "/v1/acl/tokens/{accessor}", delete_token),
)
