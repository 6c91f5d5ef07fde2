"""``dkronctl agent``: run a dkron-py node (server + REST API) until a signal stops it."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import ipaddress
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from core.config import SETTINGS, AgentConfig, ConfigError, load_config
from core.security.redact import hide_secret_flags, scrub_secret_environment
from core.settings import FlagStyle, Setting

if TYPE_CHECKING:
    from core.node import DkronServer

__all__ = ["AgentStartError", "agent", "run_agent"]

log = logging.getLogger("dkron.agent")

# Seconds to wait for a forced shutdown (second signal) to kill the running jobs, record
# them and shut the plugins down before exiting.
_FORCED_STOP_TIMEOUT = 15.0
_API_STOP_TIMEOUT = 5.0
_SIGNAL_DEBOUNCE = 0.5


class AgentStartError(Exception):
    """The node could not start; the message is the one line shown to the operator."""


def agent(**options: Any) -> None:
    """Start a dkron-py node. Settings: flag > DKRON_* env var > config file > default."""
    config: Path | None = options.pop("config")
    # A repeatable flag not given is an empty list: not given, as a switch's None.
    flags = {
        name: None if isinstance(value, list | tuple) and not value else value
        for name, value in options.items()
    }
    # Secrets on the command line are visible to every local user: hide them from ps at
    # once, and say where they belong.
    secret_flags = [spec for spec in SETTINGS if spec.secret and flags.get(spec.name) is not None]
    hide_secret_flags(sys.argv)
    try:
        settings = load_config(flags, config_file=config)
        check_cluster_settings(settings)
        check_security_settings(settings)
    except ConfigError as exc:
        _fail(str(exc), 2)
    _configure_logging(settings)
    scrub_secret_environment()  # read: plugins and jobs inherit the rest of it
    for spec in sorted(secret_flags, key=lambda spec: spec.name):
        log.warning(
            "%s was given on the command line, which other local users can read while "
            "the process starts: set %s or put it in the config file instead",
            spec.option,
            spec.env,
        )
    try:
        code = asyncio.run(run_agent(settings))
    except AgentStartError as exc:
        _fail(str(exc), 1)
    raise typer.Exit(code)


_FLAG_TYPES: dict[FlagStyle, Any] = {
    "value": str | None,  # parsed by the setting, so every source gives the same errors
    "repeat": list[str] | None,
    "switch": bool | None,
    "toggle": bool | None,
}


def _option(spec: Setting) -> inspect.Parameter:
    option = typer.Option(
        spec.declaration, help=spec.help, metavar=spec.metavar, show_default=False
    )
    return inspect.Parameter(
        spec.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[_FLAG_TYPES[spec.style], option],
    )


# typer reads the options from the signature: one per setting of core.config, in its
# order, then --config.
agent.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        *(_option(spec) for spec in SETTINGS),
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                Path | None,
                typer.Option(
                    "--config",
                    help="Config file (YAML, JSON or TOML). Default: dkron.{yml,yaml,json,toml} "
                    "in /etc/dkron, $HOME/.dkron or ./config.",
                    show_default=False,
                ),
            ],
        ),
    ],
    return_annotation=None,
)


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"dkronctl: {message}", err=True)
    raise typer.Exit(code)


def check_cluster_settings(config: AgentConfig) -> None:
    """Refuse settings that cannot form a working node, with a line saying why."""
    expect = config.bootstrap_expect
    if not config.server and expect:
        raise ConfigError("--bootstrap-expect only applies to servers (add --server)")
    if config.server and expect == 0 and not config.dev and not (config.join or config.retry_join):
        raise ConfigError(
            "a server needs --bootstrap-expect N to form a cluster, or --join/--retry-join "
            "to join one (a single node: --server --bootstrap-expect 1)"
        )
    if not config.server and not (config.join or config.retry_join):
        raise ConfigError("an agent (no --server) needs --join or --retry-join to find servers")
    ports = {
        "rpc-port": config.rpc_port,
        "raft-port": config.effective_raft_port,
        "bind-addr port": config.gossip_port,
    }
    if not config.server:
        del ports["raft-port"]
    if config.http_host in ("", "0.0.0.0", config.bind_host):
        ports["http-addr port"] = config.http_port
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if port and port in seen:
            raise ConfigError(f"{seen[port]} and {name} are both {port}; they must differ")
        seen[port] = name


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


NO_KEY_BEYOND_LOOPBACK = (
    "refusing to listen on {host} without a cluster key: anyone who can reach the RPC, "
    "Raft or gossip port could run commands on this node. Give every node the same "
    "DKRON_ENCRYPT key (dkronctl keygen), or pass --insecure to run unauthenticated as "
    "Dkron's open-source build does"
)


def check_security_settings(config: AgentConfig) -> None:
    """Refuse settings that would leave a port open to strangers (docs/security.md)."""
    from core.security.tls import TlsError

    if config.acl_enabled and not config.encrypt:
        raise ConfigError(
            "acl.enabled needs a cluster key (DKRON_ENCRYPT or encrypt in the config file): "
            "without one, any host that reaches the RPC port could run jobs past the ACLs"
        )
    if not config.encrypt and not config.insecure and not _is_loopback(config.bind_host):
        raise ConfigError(NO_KEY_BEYOND_LOOPBACK.format(host=config.bind_host or "0.0.0.0"))
    try:
        config.tls.check()
    except TlsError as exc:
        raise ConfigError(str(exc)) from None


def _configure_logging(config: AgentConfig) -> None:
    logging.basicConfig(
        level=config.level,
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s node={config.node_name} %(name)s: %(message)s",
        force=True,
    )
    # Per-request and Raft chatter only matters when debugging (as Dkron's gin log).
    if config.level > logging.DEBUG:
        for name in ("pysyncobj", "aiohttp.access"):
            logging.getLogger(name).setLevel(logging.WARNING)


# -- running -----------------------------------------------------------------------------


def preflight(config: AgentConfig) -> None:
    """Check the data dir and ports before starting anything, for a one-line error."""
    from core.store.lock import DataDirLock, DataDirLocked
    from core.store.raft import data_dir_writable

    if not config.dev:
        try:
            data_dir_writable(config.data_dir)
        except OSError as exc:
            raise AgentStartError(
                f"data dir {config.data_dir} is not writable: {exc.strerror or exc}"
            ) from None
        # Before the ports: a second agent on this data dir is the real conflict, even
        # when its ports would also clash. The server takes the lock for good at start.
        probe = DataDirLock(config.data_dir)
        try:
            probe.acquire()
        except DataDirLocked as exc:
            raise AgentStartError(str(exc)) from None
        probe.release()
    if config.server:
        _probe_port("http-addr", config.http_host, config.http_port)
        _probe_port("raft-port", config.bind_host, config.effective_raft_port)
    _probe_port("rpc-port", config.bind_host, config.rpc_port)
    _probe_port("bind-addr", config.bind_host, config.gossip_port)
    _security_notes(config)
    _reserved_tag_notes(config)


# Tags every node sets itself (Dkron's, and raft_addr and executors of ours): a --tag
# with one of these names is overwritten, so a job targeting it would never run.
RESERVED_TAGS = (
    "role", "version", "server", "bootstrap", "expect", "port", "rpc_addr", "dc", "region",
    "raft_addr", "executors",
)  # fmt: skip


def _reserved_tag_notes(config: AgentConfig) -> None:
    for key in sorted(set(config.tags) & set(RESERVED_TAGS)):
        log.warning(
            "tag %r is reserved: the node sets it itself, so %s=%s is replaced and jobs "
            "targeting it will not run here; give the tag another name",
            key,
            key,
            config.tags[key],
        )


def _security_notes(config: AgentConfig) -> None:
    """One sentence per exposure this configuration accepts, at start."""
    if not config.encrypt:
        if _is_loopback(config.bind_host):
            log.info(
                "no cluster key: node-to-node traffic is unauthenticated, and only this "
                "host can reach it (%s)",
                config.bind_host,
            )
        else:
            log.warning(
                "--insecure: listening on %s without a cluster key; anyone who can reach "
                "the RPC, Raft or gossip port can run commands on this node",
                config.bind_host,
            )
    if config.server and not config.acl_enabled and not _is_loopback(config.http_host):
        log.warning(
            "the API on %s is reachable from other hosts and ACLs are off: anyone who "
            "reaches it can create and run jobs (acl.enabled, docs/security.md)",
            config.http_addr,
        )


def _probe_port(what: str, host: str, port: int) -> None:
    if port == 0:
        return
    shown = f"{host or '0.0.0.0'}:{port}"
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise AgentStartError(f"cannot listen on {what} {shown}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As the real servers do, so a port in TIME_WAIT after a restart is not "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise AgentStartError(f"cannot listen on {what} {shown}: {reason}") from None


async def run_agent(config: AgentConfig) -> int:
    """Run until SIGTERM/SIGINT (or POST /v1/leave); return the exit status."""
    from core.api import serve_api
    from core.node import DkronServer

    preflight(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    force = asyncio.Event()
    server = DkronServer(config.to_server_config())
    try:
        await server.start()
    except Exception as exc:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.stop(0), _FORCED_STOP_TIMEOUT)
        raise AgentStartError(f"cannot start the server: {exc}") from None

    def request_stop() -> None:
        stop.set()

    server.on_leave = request_stop
    runner = None
    if config.server:  # a plain agent serves no API, as in Dkron
        https = config.tls.enabled and not config.disable_http_tls
        try:
            runner = await serve_api(
                server,
                config.http_host,
                config.http_port,
                on_leave=request_stop,
                ssl_context=config.tls.http_context() if https else None,
            )
        except OSError as exc:
            await server.stop(0)
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise AgentStartError(
                f"cannot listen on http-addr {config.http_addr}: {reason}"
            ) from None

    first_signal: float | None = None

    def on_signal(number: int) -> None:
        nonlocal first_signal
        now = loop.time()
        if first_signal is None:
            first_signal = now
            log.warning(
                "%s: stopping the scheduler, waiting up to %gs for running executions "
                "(signal again to exit at once)",
                signal.Signals(number).name,
                config.drain_timeout,
            )
            stop.set()
        elif now - first_signal < _SIGNAL_DEBOUNCE:
            # One signal delivered twice (to the process and to its group, as `timeout`
            # and some supervisors do) is not an operator insisting.
            log.debug("ignoring a repeated %s", signal.Signals(number).name)
        else:
            log.warning("%s again: exiting without waiting", signal.Signals(number).name)
            force.set()

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, on_signal, number)

    rescans: set[asyncio.Task[list[str]]] = set()

    def on_hangup() -> None:
        # SIGHUP: look for plugins dropped into the plugin directories since start.
        log.info("SIGHUP: rescanning the plugin directories")
        task = asyncio.ensure_future(server.rescan_plugins())
        rescans.add(task)
        task.add_done_callback(rescans.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hangup)

    typer.echo(_startup_line(config, server, runner.addresses if runner is not None else []))
    stopped = asyncio.ensure_future(stop.wait())
    failed = asyncio.ensure_future(server.store.failed.wait())
    await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    failed.cancel()

    code = 0
    if server.store.fatal is not None:
        # The store cannot go on (an entry or snapshot it cannot read): stop, say why.
        typer.echo(f"dkronctl: {server.store.fatal}", err=True)
        code = 1
    stopping = asyncio.ensure_future(server.stop(config.drain_timeout))
    forced = asyncio.ensure_future(force.wait())
    await asyncio.wait({stopping, forced}, return_when=asyncio.FIRST_COMPLETED)
    if not stopping.done():
        stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await stopping
        # Drain skipped: the second stop still shuts plugins down rather than orphan them.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.stop(0), _FORCED_STOP_TIMEOUT)
        code = 1
    forced.cancel()
    if runner is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runner.cleanup(), _API_STOP_TIMEOUT)
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.remove_signal_handler(number)
    if code == 0:
        log.info("stopped")
    return code


def _startup_line(config: AgentConfig, server: DkronServer, addresses: list[object]) -> str:
    port = config.http_port
    for address in addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            port = int(address[1])
            break
    host = config.http_host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    data = "in memory (--dev)" if config.dev else str(Path(config.data_dir).resolve())
    gossip = server.gossip.address if server.gossip is not None else config.bind_addr
    if not config.server:
        return (
            f"dkron-py agent {config.node_name!r} (agent, pid {os.getpid()}): "
            f"rpc {server.rpc_address}  gossip {gossip}"
        )
    scheme = "https" if config.tls.enabled and not config.disable_http_tls else "http"
    return (
        f"dkron-py agent {config.node_name!r} (server, pid {os.getpid()}): "
        f"API {scheme}://{host}:{port}/  data dir {data}  rpc {server.rpc_address}  "
        f"raft {server.raft_address}  gossip {gossip}"
    )
