"""``dkronctl acl ...``: Dkron Pro's ACL commands, over a server's RPC port.

``bootstrap`` needs nothing (it works once per cluster); everything else needs a
management token (``--token`` / ``DKRON_TOKEN``) or the cluster key.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from core.cli.client import AsJson, echo_json, fail, table
from core.cli.rpc import RpcOptions, call, rpc_command

__all__ = ["app"]

app = typer.Typer(help="Control ACL tokens and policies.", no_args_is_help=True)
policy_app = typer.Typer(help="Operate ACL policies.", no_args_is_help=True)
token_app = typer.Typer(help="Operate ACL tokens.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
app.add_typer(token_app, name="token")

Name = Annotated[str | None, typer.Option("-n", "--name", help="Policy name.", show_default=False)]
NameArgument = Annotated[
    str | None, typer.Argument(help="Policy name (or -n).", show_default=False)
]


def _stub(options: RpcOptions, method: str, request: Any) -> Any:
    from dkron_pb.dkronpy.v1 import acl_pb2_grpc

    return call(options, acl_pb2_grpc.AclServiceStub, method, request)


def _go_time(stamp: Any) -> str:
    # Go's time.String(): "2024-10-06 11:03:36.605368 +0000 UTC" (trailing zeros cut).
    moment = datetime.fromtimestamp(stamp.seconds + stamp.nanos / 1e9, UTC)
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return (
        moment.strftime("%Y-%m-%d %H:%M:%S") + (f".{fraction}" if fraction else "") + " +0000 UTC"
    )


def _token_dict(token: Any) -> dict[str, Any]:
    shown = {
        "accessor_id": token.accessor_id,
        "name": token.name,
        "type": token.type,
        "policies": list(token.policies),
        "create_time": _go_time(token.create_time),
    }
    if token.secret:
        shown["secret"] = token.secret
    return shown


def _print_token(token: Any) -> None:
    lines = [f"Accessor ID: {token.accessor_id}"]
    if token.secret:
        lines.append(f"Secret: {token.secret}")
    lines += [
        f"Name: {token.name}",
        f"Type: {token.type}",
        f"CreateTime: {_go_time(token.create_time)}",
        f"Policies: {', '.join(token.policies)}",
    ]
    typer.echo("\n".join(lines))


@app.command("bootstrap")
@rpc_command
def bootstrap(
    options: RpcOptions,
    as_json: AsJson = False,
) -> None:
    """Create the first management token (once per cluster) and print it."""
    from google.protobuf import empty_pb2

    reply = _stub(options, "Bootstrap", empty_pb2.Empty())
    if as_json:
        echo_json(_token_dict(reply))
    else:
        _print_token(reply)


@policy_app.command("apply")
@rpc_command
def policy_apply(
    options: RpcOptions,
    name: Name = None,
    rules_file: Annotated[
        Path | None,
        typer.Option(
            "-r", "--rules-file", help="File with the policy's rules (JSON).", show_default=False
        ),
    ] = None,
) -> None:
    """Create or replace a policy from a rules file."""
    from dkron_pb.dkronpy.v1 import acl_pb2

    if not name or rules_file is None:
        fail("policy apply needs -n NAME and -r RULES_FILE", 2)
    try:
        rules = rules_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {rules_file}: {exc}")
    reply = _stub(options, "ApplyPolicy", acl_pb2.AclPolicy(name=name, rules=rules))
    typer.echo(f"policy {reply.name!r} applied")


@policy_app.command("list")
@rpc_command
def policy_list(
    options: RpcOptions,
    as_json: AsJson = False,
) -> None:
    """List policies."""
    from google.protobuf import empty_pb2

    reply = _stub(options, "ListPolicies", empty_pb2.Empty())
    if as_json:
        echo_json([{"name": p.name, "rules": json.loads(p.rules)} for p in reply.policies])
        return
    rows = [[p.name, len(json.loads(p.rules).get("path", {}))] for p in reply.policies]
    typer.echo(table(rows, ["Name", "Paths"]))


def _policy_name(positional: str | None, option: str | None) -> str:
    chosen = positional or option
    if not chosen:
        fail("give the policy name (NAME or -n NAME)", 2)
    return chosen


@policy_app.command("info")
@rpc_command
def policy_info(
    options: RpcOptions,
    policy: NameArgument = None,
    name: Name = None,
) -> None:
    """Print a policy's rules."""
    from dkron_pb.dkronpy.v1 import acl_pb2

    chosen = _policy_name(policy, name)
    reply = _stub(options, "GetPolicy", acl_pb2.AclPolicyName(name=chosen))
    echo_json({"name": reply.name, "rules": json.loads(reply.rules)})


@policy_app.command("delete")
@rpc_command
def policy_delete(
    options: RpcOptions,
    policy: NameArgument = None,
    name: Name = None,
) -> None:
    """Delete a policy."""
    from dkron_pb.dkronpy.v1 import acl_pb2

    chosen = _policy_name(policy, name)
    _stub(options, "DeletePolicy", acl_pb2.AclPolicyName(name=chosen))
    typer.echo(f"policy {chosen!r} deleted")


@token_app.command("create")
@rpc_command
def token_create(
    options: RpcOptions,
    name: Annotated[
        str | None,
        typer.Option("-n", "--name", help="The token's human-readable name.", show_default=False),
    ] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option(
            "-p", "--policy", help="A policy for a client token (repeatable; default: default)."
        ),
    ] = None,
    kind: Annotated[str, typer.Option("-t", "--type", help="client or management.")] = "client",
    as_json: AsJson = False,
) -> None:
    """Create a token and print it, secret included (shown only now)."""
    from dkron_pb.dkronpy.v1 import acl_pb2

    if not name:
        fail("token create needs -n NAME", 2)
    policies = [] if kind == "management" else list(policy or ["default"])
    request = acl_pb2.CreateTokenRequest(name=name, type=kind, policies=policies)
    reply = _stub(options, "CreateToken", request)
    if as_json:
        echo_json(_token_dict(reply))
    else:
        _print_token(reply)


@token_app.command("list")
@rpc_command
def token_list(
    options: RpcOptions,
    as_json: AsJson = False,
) -> None:
    """List tokens (never their secrets)."""
    from google.protobuf import empty_pb2

    reply = _stub(options, "ListTokens", empty_pb2.Empty())
    if as_json:
        echo_json([_token_dict(t) for t in reply.tokens])
        return
    rows = [[t.accessor_id, t.name, t.type, ", ".join(t.policies)] for t in reply.tokens]
    typer.echo(table(rows, ["Accessor ID", "Name", "Type", "Policies"]))


Accessor = Annotated[
    str | None, typer.Argument(help="Accessor ID (default: your own token).", show_default=False)
]


@token_app.command("info")
@rpc_command
def token_info(
    options: RpcOptions,
    accessor: Accessor = None,
    as_json: AsJson = False,
) -> None:
    """Print a token (without its secret)."""
    from dkron_pb.dkronpy.v1 import acl_pb2

    reply = _stub(options, "GetToken", acl_pb2.TokenQuery(accessor_id=accessor or ""))
    if as_json:
        echo_json(_token_dict(reply))
    else:
        _print_token(reply)


@token_app.command("delete")
@rpc_command
def token_delete(
    options: RpcOptions,
    accessor: Annotated[str, typer.Argument(help="Accessor ID of the token to revoke.")],
) -> None:
    """Revoke a token (on every server at once)."""
    from dkron_pb.dkronpy.v1 import acl_pb2

    _stub(options, "DeleteToken", acl_pb2.TokenQuery(accessor_id=accessor))
    typer.echo(f"token {accessor} revoked")
