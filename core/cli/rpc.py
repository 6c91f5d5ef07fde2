"""What the CLI's gRPC commands (``raft``, ``acl``) share: the server address, the
caller's credentials, and one call with errors as one line.

Credentials, as a server checks them (core.security.rpc): an ACL token (``--token`` /
``DKRON_TOKEN``) and, when the cluster has a key, node credentials signed with it. The
key is read like the agent reads it, from ``DKRON_ENCRYPT`` or ``encrypt`` in the
config file (never from a flag, which ``ps`` would show). TLS flags are Dkron Pro's.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from core.cli.client import Token, fail

__all__ = ["RpcAddress", "RpcOptions", "call", "rpc_command"]

RpcAddress = Annotated[
    str,
    typer.Option(
        "--rpc-addr", envvar="DKRON_RPC_ADDR", help="A server's gRPC address (host:rpc-port)."
    ),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Agent config file to read the cluster key (encrypt) from; default: the "
        "agent's search path. DKRON_ENCRYPT wins.",
        show_default=False,
    ),
]
CertFile = Annotated[
    Path | None,
    typer.Option("--cert-file", help="Client TLS certificate (RPC over TLS).", show_default=False),
]
KeyFile = Annotated[
    Path | None,
    typer.Option("--key-file", help="Client TLS key of --cert-file.", show_default=False),
]
TrustedCaFile = Annotated[
    Path | None,
    typer.Option(
        "--trusted-ca-file", help="CA that signs the server's certificate.", show_default=False
    ),
]
_TIMEOUT = 10.0


class RpcOptions:
    def __init__(
        self,
        address: str,
        token: str | None,
        config: Path | None,
        cert_file: Path | None,
        key_file: Path | None,
        trusted_ca_file: Path | None,
    ) -> None:
        self.address = address
        self.token = token
        self.config = config
        self.cert_file = cert_file
        self.key_file = key_file
        self.trusted_ca_file = trusted_ca_file

    def _cluster_key(self) -> Any:
        from core.config import ConfigError, load_config
        from core.security.keys import ClusterKey

        try:
            settings = load_config({}, config_file=self.config)
        except ConfigError as exc:
            fail(str(exc), 2)
        return ClusterKey(settings.encrypt) if settings.encrypt else None

    def channel(self) -> Any:
        import grpc

        from core.security.rpc import CallSigner, sync_node_interceptor

        if self.cert_file is not None or self.trusted_ca_file is not None:

            def read(path: Path | None) -> bytes | None:
                if path is None:
                    return None
                try:
                    return path.read_bytes()
                except OSError as exc:
                    fail(f"cannot read {path}: {exc.strerror or exc}")

            credentials = grpc.ssl_channel_credentials(
                root_certificates=read(self.trusted_ca_file),
                private_key=read(self.key_file),
                certificate_chain=read(self.cert_file),
            )
            channel = grpc.secure_channel(self.address, credentials)
        else:
            channel = grpc.insecure_channel(self.address)
        key = self._cluster_key()
        signer = CallSigner(key.rpc) if key is not None else None
        return grpc.intercept_channel(channel, sync_node_interceptor(signer, self.token))


_DEFAULT_RPC = "127.0.0.1:6868"
_KEYWORD = inspect.Parameter.KEYWORD_ONLY
# What every RPC command takes, in this order (RpcOptions's fields).
_CONNECTION = [
    inspect.Parameter("address", _KEYWORD, default=_DEFAULT_RPC, annotation=RpcAddress),
    inspect.Parameter("token", _KEYWORD, default=None, annotation=Token),
    inspect.Parameter("config", _KEYWORD, default=None, annotation=ConfigFile),
    inspect.Parameter("cert_file", _KEYWORD, default=None, annotation=CertFile),
    inspect.Parameter("key_file", _KEYWORD, default=None, annotation=KeyFile),
    inspect.Parameter("trusted_ca_file", _KEYWORD, default=None, annotation=TrustedCaFile),
]


def rpc_command(function: Callable[..., None]) -> Callable[..., None]:
    """A command whose first parameter is ``options: RpcOptions``, given the connection
    options (address, token, config, TLS files) as typer sees them."""
    own = inspect.signature(function, eval_str=True)
    kept = [p for name, p in own.parameters.items() if name != "options"]

    @functools.wraps(function)
    def command(**values: Any) -> None:
        connection = [values.pop(p.name) for p in _CONNECTION]
        function(RpcOptions(*connection), **values)

    parameters = kept + _CONNECTION
    command.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
    # Evaluated here, in the command's module: typer resolves string annotations against
    # this wrapper's module otherwise.
    command.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": None}
    del command.__wrapped__  # typer must read the signature above, not the function's
    return command


def call(options: RpcOptions, stub_class: Any, method: str, request: Any) -> Any:
    """One call; a failure is printed as one line and exits 1."""
    import grpc

    channel = options.channel()
    try:
        stub = stub_class(channel)
        return getattr(stub, method)(request, timeout=_TIMEOUT)
    except grpc.RpcError as exc:
        code = exc.code()
        detail = exc.details()
        if code == grpc.StatusCode.UNAVAILABLE:
            fail(f"cannot reach a server at {options.address}: {detail}")
        fail(str(detail or code.name))
    finally:
        channel.close()
