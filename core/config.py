"""Agent configuration: every setting of ``dkronctl agent``, declared once.

Each field of :class:`AgentConfig` declared with :func:`~core.settings.setting` is one
setting; its parser, ``--help`` line and flag style are written here and nowhere else.
From the field's name ``core.settings`` derives the flag (``--bootstrap-expect``), the
environment variable (``DKRON_BOOTSTRAP_EXPECT``) and the config-file key
(``bootstrap-expect`` or ``bootstrap_expect``), and merges them as Dkron does: flag > env
> file > default. ``core.cli.agent`` generates the command's typer options from the same
fields. Adding a setting is one field here (plus a test); a notification setting is
also a field of ``core.notify.NotifyConfig``, which is what the notifier reads. Why a
table of our own and not pydantic-settings: see ``core.settings``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from core.notify.settings import parse_endpoint, parse_headers, parse_webhook_on
from core.setting_types import (
    address,
    boolean,
    cluster_key,
    duration,
    log_level,
    non_empty,
    non_negative,
    optional_path,
    optional_port,
    parse_tags,
    path,
    port,
    positive,
    split_host_port,
    strings,
    stripped,
    text,
)
from core.settings import (
    CONFIG_SEARCH_DIRS,
    LOG_LEVELS,
    ConfigError,
    Factory,
    find_config_file,
    read_config_file,
    resolve,
    setting,
    settings_of,
)

# Processes per executor plugin (--executor-processes). Measured on two cores at 100
# runs/s (docs/benchmarks.md): with two, a burst's jobs start ~18 ms sooner at p50 and
# finish ~40 ms sooner at p99 than with one.
DEFAULT_EXECUTOR_PROCESSES = 2

if TYPE_CHECKING:
    from core.node import ServerConfig
    from core.security.tls import TlsFiles

__all__ = [
    "CONFIG_SEARCH_DIRS",
    "LOG_LEVELS",
    "SECRET_SETTINGS",
    "SETTINGS",
    "SETTINGS_BY_NAME",
    "AgentConfig",
    "ConfigError",
    "find_config_file",
    "load_config",
    "parse_tags",
    "read_config_file",
]


@dataclass(frozen=True)
class AgentConfig:
    """The settings, in ``--help`` order; ``config_file`` is where they were read from."""

    server: bool = setting(
        False,
        boolean,
        "Run as a server (holds the jobs, schedules, serves the API).",
        style="switch",
    )
    node_name: str = setting(
        Factory(socket.gethostname), non_empty, "Name of this node (default: the hostname)."
    )
    # Gossip listens here (UDP and TCP); gRPC and Raft listen on its host. Dkron binds
    # to the private IP; loopback keeps a first single node private.
    bind_addr: str = setting(
        "127.0.0.1:8946",
        address("bind-addr"),
        "host:port; the host is where gRPC and Raft listen (127.0.0.1).",
        metavar="ADDR",
    )
    advertise_addr: str = setting(
        "", address("advertise-addr"), "Address advertised to other nodes.", metavar="ADDR"
    )
    # Dkron listens on every interface (:8080). Without ACLs that lets any host create
    # and run jobs, so the API starts on loopback unless told where (e.g. :8080).
    http_addr: str = setting(
        "127.0.0.1:8080",
        address("http-addr"),
        "Where the REST API listens (127.0.0.1:8080; :8080 for all).",
        metavar="ADDR",
    )
    ui: bool = setting(True, boolean, "Enable the web UI on this node", metavar="BOOL")
    join: tuple[str, ...] = setting(
        (), strings, "Gossip address (host:port) of a node to join.", style="repeat"
    )
    retry_join: tuple[str, ...] = setting(
        (), strings, "Gossip address to join, retried in the background.", style="repeat"
    )
    retry_interval: float = setting(  # seconds (Go duration in files, env and flags)
        30.0, duration, "Time between join attempts (30s).", metavar="DURATION"
    )
    retry_max: int = setting(0, non_negative, "Join attempts, 0 = unlimited (0).", metavar="N")
    tags: Mapping[str, str] = setting(
        Factory(dict),
        parse_tags,
        "Node tag key=value (repeatable; replaces the file's tags).",
        metavar="K=V",
        style="repeat",
        flag="--tag",
        aliases=("tag",),
    )
    encrypt: str = setting(
        "",
        cluster_key,
        "Cluster key (dkronctl keygen); better in DKRON_ENCRYPT or the config file.",
        secret=True,
    )
    rpc_port: int = setting(6868, port, "gRPC port (6868).", metavar="PORT")
    advertise_rpc_port: int = setting(0, port, "Advertised gRPC port (rpc-port).", metavar="PORT")
    bootstrap_expect: int = setting(
        0, non_negative, "Servers that form the cluster (1: a single node).", metavar="N"
    )
    data_dir: Path = setting(
        Path("dkron.data"), path, "Where Raft keeps its data (dkron.data).", metavar="DIR"
    )
    datacenter: str = setting("dc1", non_empty, "Datacenter (dc1).")
    region: str = setting("global", non_empty, "Region (global).")
    log_level: str = setting("info", log_level, "debug|info|warn|error|fatal|panic (info).")
    dev: bool = setting(  # Raft state in memory only
        False,
        boolean,
        "Development mode: Raft state in memory only.",
        style="switch",
        aliases=("devmode",),
    )
    # Dkron Pro's ACLs and TLS (open build here; see docs/security.md):
    acl_enabled: bool = setting(  # `acl: {enabled: true}` in a file, as Dkron Pro
        False,
        boolean,
        "Require ACL tokens on the API and RPC (Dkron Pro's acl.enabled).",
        style="switch",
    )
    cert_file: Path | None = setting(
        None, optional_path, "TLS certificate (API and RPC).", metavar="FILE"
    )
    key_file: Path | None = setting(
        None, optional_path, "TLS private key of --cert-file.", metavar="FILE"
    )
    trusted_ca_file: Path | None = setting(
        None, optional_path, "CA that signs peers and clients.", metavar="FILE"
    )
    client_cert_auth: bool = setting(
        False,
        boolean,
        "Require client certificates from --trusted-ca-file (API and RPC).",
        style="switch",
    )
    client_crl_file: Path | None = setting(
        None, optional_path, "Revoked client certificates.", metavar="FILE"
    )
    disable_http_tls: bool = setting(
        False, boolean, "Serve the API over plain HTTP even with certificates.", style="switch"
    )
    auto_tls: bool = setting(  # accepted for Pro's files; node calls are signed with the key
        True,
        boolean,
        "Accepted for Dkron Pro; node calls are authenticated with the cluster key.",
        style="toggle",
        flag="--auto-tls/--no-auto-tls",
    )
    # Ours, not Dkron's:
    insecure: bool = setting(  # listen beyond loopback without a cluster key
        False,
        boolean,
        "Allow listening beyond loopback without a cluster key (unauthenticated).",
        style="switch",
    )
    strict_job_fields: bool = setting(  # 400 for unknown job keys (else a Warning header)
        False,
        boolean,
        "Refuse job bodies with unknown keys (400) instead of warning about them.",
        style="switch",
    )
    plugin_dir: Path = setting(
        Path("plugins.d"), path, "First directory searched for plugins.", metavar="DIR"
    )
    raft_port: int | None = setting(  # None: rpc_port + 1
        None, optional_port, "Raft port (rpc-port + 1).", metavar="PORT"
    )
    max_history: int = setting(100, positive, "Executions kept per job (100).", metavar="N")
    output_limit: int = setting(
        256_000, positive, "Output bytes kept per execution.", metavar="BYTES"
    )
    # Dkron waits for running executions without limit; a bound keeps one hung job
    # from blocking a restart forever. A second signal skips the wait.
    drain_timeout: float = setting(
        30.0,
        duration,
        "On SIGTERM, wait this long for running executions (30s).",
        metavar="DURATION",
    )
    # Not in Dkron (its Go plugins take calls on many threads); one Python plugin process
    # takes in about one call per millisecond, so a burst is spread over several.
    executor_processes: int = setting(
        1,
        positive,
        "Processes of each executor plugin; runs go to the least busy (1).",
        metavar="N",
    )
    # Not in Dkron, whose leader starts every fire at once however many there are; above
    # this node's capacity that meant lag growing by the second (core.dispatch.backlog).
    dispatch_concurrency: int = setting(
        256,
        positive,
        "Scheduled runs in progress at once (256); later fires wait, up to 5s.",
        metavar="N",
    )
    # Notifications (Dkron's flags; see core.notify):
    pre_webhook_endpoint: str = setting(
        "", parse_endpoint, "URL POSTed when an execution starts.", metavar="URL"
    )
    pre_webhook_payload: str = setting(
        "", text, "Template of the pre-webhook body.", metavar="TEMPLATE"
    )
    pre_webhook_headers: tuple[str, ...] = setting(
        (), parse_headers, "Pre-webhook header (repeatable).", metavar="'K: V'", style="repeat"
    )
    webhook_endpoint: str = setting(
        "", parse_endpoint, "URL POSTed when an execution finishes.", metavar="URL"
    )
    webhook_payload: str = setting("", text, "Template of the webhook body.", metavar="TEMPLATE")
    webhook_headers: tuple[str, ...] = setting(
        (), parse_headers, "Webhook header (repeatable).", metavar="'K: V'", style="repeat"
    )
    webhook_on: str = setting(  # always | failure | success (Dkron #712, #288): ours
        "always", parse_webhook_on, "Send the webhook on: always|failure|success (always)."
    )
    mail_host: str = setting("", stripped, "SMTP server for execution reports.", metavar="HOST")
    mail_port: int = setting(0, port, "SMTP port.", metavar="PORT")
    mail_username: str = setting("", text, "SMTP user (AUTH needs a password too).")
    mail_password: str = setting(
        "", text, "SMTP password (better: DKRON_MAIL_PASSWORD).", secret=True
    )
    mail_from: str = setting("", text, "Sender of execution reports.", metavar="ADDRESS")
    mail_payload: str = setting(
        "", text, "Template of the mail body (default: output).", metavar="TEMPLATE"
    )
    mail_subject_prefix: str = setting("[Dkron]", text, "Mail subject prefix ([Dkron]).")
    cronitor_endpoint: str = setting("", parse_endpoint, "Cronitor telemetry URL.", metavar="URL")
    config_file: Path | None = field(default=None)  # the file the values were read from, if any

    @property
    def bind_host(self) -> str:
        return split_host_port(self.bind_addr, "bind-addr")[0] or "0.0.0.0"

    @property
    def gossip_port(self) -> int:
        port = split_host_port(self.bind_addr, "bind-addr")[1]
        return 8946 if port is None else port

    @property
    def advertise_host(self) -> str:
        return (
            split_host_port(self.advertise_addr, "advertise-addr")[0] if self.advertise_addr else ""
        )

    @property
    def http_host(self) -> str:
        return split_host_port(self.http_addr, "http-addr")[0]

    @property
    def http_port(self) -> int:
        return split_host_port(self.http_addr, "http-addr")[1] or 8080

    @property
    def effective_raft_port(self) -> int:
        return self.raft_port if self.raft_port is not None else self.rpc_port + 1

    @property
    def level(self) -> int:
        return LOG_LEVELS[self.log_level]

    @property
    def tls(self) -> TlsFiles:
        from core.security.tls import TlsFiles

        return TlsFiles(
            cert_file=self.cert_file,
            key_file=self.key_file,
            trusted_ca_file=self.trusted_ca_file,
            client_cert_auth=self.client_cert_auth,
            client_crl_file=self.client_crl_file,
        )

    def to_server_config(self) -> ServerConfig:
        # Imported here: the client commands load this module and need none of the server.
        from core.dispatch.backlog import BacklogLimits
        from core.node import ServerConfig
        from core.notify.settings import NotifyConfig
        from core.plugins.runtime import RuntimeSettings

        return ServerConfig(
            node_name=self.node_name,
            data_dir=None if self.dev else self.data_dir,
            bind_host=self.bind_host,
            rpc_port=self.rpc_port,
            raft_port=self.effective_raft_port,
            datacenter=self.datacenter,
            region=self.region,
            tags=dict(self.tags),
            # --dev alone is a single node, as Dkron's dev mode bootstraps itself.
            bootstrap_expect=(
                1
                if self.dev and self.bootstrap_expect == 0 and not (self.join or self.retry_join)
                else self.bootstrap_expect
            ),
            encrypt=self.encrypt or None,
            acl_enabled=self.acl_enabled,
            strict_job_fields=self.strict_job_fields,
            tls=self.tls,
            server=self.server,
            gossip_port=self.gossip_port,
            advertise_host=self.advertise_host,
            join=tuple(self.join),
            retry_join=tuple(self.retry_join),
            retry_interval=self.retry_interval,
            retry_max=self.retry_max,
            max_history=self.max_history,
            output_limit=self.output_limit,
            dispatch=BacklogLimits(slots=self.dispatch_concurrency),
            plugins=RuntimeSettings(
                plugin_dir=self.plugin_dir,
                output_limit=self.output_limit,
                executor_processes=self.executor_processes,
            ),
            # Every notification setting, by name (NotifyConfig's own fields are its API).
            notify=NotifyConfig(
                **{f.name: getattr(self, f.name) for f in fields(NotifyConfig) if f.name in _NAMES}
            ),
        )


SETTINGS = settings_of(AgentConfig)
SETTINGS_BY_NAME = {spec.name: spec for spec in SETTINGS}
_NAMES = frozenset(SETTINGS_BY_NAME)
# Never shown in an error message, a log line or /debug/vars.
SECRET_SETTINGS = frozenset(spec.name for spec in SETTINGS if spec.secret)
# Settings a file may also give as a section (`acl: {enabled: true}` is acl_enabled).
_SECTIONS = ("acl",)
# Known Dkron settings this milestone ignores: not worth a warning each start.
_KNOWN_UNSUPPORTED = {
    "profile",
    "raft_multiplier",
    "serf_reconnect_timeout",
    "disable_usage_stats",
    "bootstrap",
    "reconcile_interval",
}


def load_config(
    flags: Mapping[str, object | None],
    *,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    search_dirs: Sequence[Path] = CONFIG_SEARCH_DIRS,
) -> AgentConfig:
    """Merge flags (``None`` = not given) > ``DKRON_*`` env > config file > defaults.

    ``flags`` is keyed by field name (``bootstrap_expect``). Raises :class:`ConfigError`.
    """
    path = config_file if config_file is not None else find_config_file(search_dirs)
    values = resolve(
        SETTINGS,
        flags,
        env=os.environ if env is None else env,
        path=path,
        search_dirs=search_dirs,
        sections=_SECTIONS,
        ignored=_KNOWN_UNSUPPORTED,
    )
    config = AgentConfig(**values, config_file=path)
    if config.raft_port is None and not 0 < config.rpc_port < 65535:
        raise ConfigError("--rpc-port 0 needs an explicit --raft-port (Raft needs a fixed port)")
    return config
