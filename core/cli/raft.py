"""``dkronctl raft list-peers`` and ``raft remove-peer``: Dkron's gRPC calls, on any server.

They talk to the server's RPC port, so they work without the REST API and when
there is no leader (list-peers then shows the configuration the server has). With a
cluster key they sign their calls with it (core.cli.rpc); with ACLs on they need a
management token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core.cli.client import AsJson, echo_json, table
from core.cli.rpc import RpcOptions, call, rpc_command

__all__ = ["app"]

app = typer.Typer(help="Inspect and change the Raft configuration.", no_args_is_help=True)


@app.command("list-peers")
@rpc_command
def list_peers(options: RpcOptions, as_json: AsJson = False) -> None:
    """List the servers in the Raft configuration, and which one leads."""
    from google.protobuf import empty_pb2

    from dkron_pb.types.v1 import dkron_pb2_grpc

    reply = call(
        options, dkron_pb2_grpc.DkronServiceStub, "RaftGetConfiguration", empty_pb2.Empty()
    )
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
@rpc_command
def remove_peer(
    options: RpcOptions,
    peer_id: Annotated[
        str, typer.Option("--peer-id", help="The server's node name (or its Raft address).")
    ],
) -> None:
    """Remove a server from the Raft configuration (for one that is gone for good)."""
    from dkron_pb.types.v1 import dkron_pb2, dkron_pb2_grpc

    call(
        options,
        dkron_pb2_grpc.DkronServiceStub,
        "RaftRemovePeerByID",
        dkron_pb2.RaftRemovePeerByIDRequest(id=peer_id),
    )
    typer.echo(f"removed peer {peer_id}")


@app.command("recover")
def recover(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="The stopped server's data dir.", show_default=False)
    ],
) -> None:
    """Check a stopped server's Raft journal and cut it back to its last good entry."""
    from core.cli.client import fail
    from core.store.journal import check_journal, cut_journal
    from core.store.lock import DataDirLock, DataDirLocked

    journal = data_dir / "raft" / "journal.bin"
    if not journal.exists():
        fail(f"{journal} does not exist: is {data_dir} a server's data dir?", 2)
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()  # never under a running agent
    except DataDirLocked as exc:
        fail(str(exc))
    try:
        damage = check_journal(journal)
        if damage is None:
            typer.echo(f"{journal} is intact: nothing to recover")
            return
        saved = cut_journal(damage)
    finally:
        lock.release()
    typer.echo(
        f"{journal}: kept the {damage.entry} good entries before byte {damage.offset} "
        f"({damage.reason}); the whole file was saved as {saved}"
    )
