"""``dkronctl raft list-peers`` and ``raft remove-peer``: Dkron's gRPC calls, on any server.

They talk to the server's RPC port, so they work without the REST API and when
there is no leader (list-peers then shows the configuration the server has).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from core.cli.client import AsJson, echo_json, fail, table

__all__ = ["app"]

app = typer.Typer(help="Inspect and change the Raft configuration.", no_args_is_help=True)

RpcAddress = Annotated[
    str,
    typer.Option(
        "--rpc-addr", envvar="DKRON_RPC_ADDR", help="A server's gRPC address (host:rpc-port)."
    ),
]
_TIMEOUT = 10.0


def _call(address: str, method: str, request: Any) -> Any:
    import grpc

    from dkron_pb.types.v1 import dkron_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = dkron_pb2_grpc.DkronServiceStub(channel)
        try:
            return getattr(stub, method)(request, timeout=_TIMEOUT)
        except grpc.RpcError as exc:
            code = exc.code()
            detail = exc.details()
            if code == grpc.StatusCode.UNAVAILABLE:
                fail(f"cannot reach a server at {address}: {detail}")
            fail(str(detail or code.name))


@app.command("list-peers")
def list_peers(address: RpcAddress = "127.0.0.1:6868", as_json: AsJson = False) -> None:
    """List the servers in the Raft configuration, and which one leads."""
    from google.protobuf import empty_pb2

    reply = _call(address, "RaftGetConfiguration", empty_pb2.Empty())
    servers = [
        {
            "id": s.id,
            "node": s.node,
            "address": s.address,
            "leader": s.leader,
            "voter": s.voter,
        }
        for s in reply.servers
    ]
    if as_json:
        echo_json({"servers": servers, "index": reply.index})
        return
    rows = [
        [s["node"], s["id"], s["address"], "leader" if s["leader"] else "follower", s["voter"]]
        for s in servers
    ]
    typer.echo(table(rows, ["Node", "ID", "Address", "State", "Voter"]))


@app.command("remove-peer")
def remove_peer(
    peer_id: Annotated[
        str, typer.Option("--peer-id", help="The server's node name (or its Raft address).")
    ],
    address: RpcAddress = "127.0.0.1:6868",
) -> None:
    """Remove a server from the Raft configuration (for one that is gone for good)."""
    from dkron_pb.types.v1 import dkron_pb2

    _call(address, "RaftRemovePeerByID", dkron_pb2.RaftRemovePeerByIDRequest(id=peer_id))
    typer.echo(f"removed peer {peer_id}")
