"""Agent configuration: Dkron's names, sources and precedence (flag > env > file > default).

A setting called ``bootstrap-expect`` on the command line is ``DKRON_BOOTSTRAP_EXPECT``
in the environment and ``bootstrap-expect`` (or ``bootstrap_expect``) in a config file.
Every value goes through one parser per field whatever its source, so a bad value gets
the same one-line error naming where it came from.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.notify.settings import parse_endpoint, parse_headers, parse_webhook_on

if TYPE_CHECKING:
    from core.security.tls import TlsFiles
    from core.server.service import ServerConfig

__all__ = [
    "CONFIG_SEARCH_DIRS",
    "LOG_LEVELS",
    "SECRET_SETTINGS",
    "AgentConfig",
    "ConfigError",
    "find_config_file",
    "load_config",
    "parse_tags",
    "read_config_file",
]

log = logging.getLogger("dkron.config")

CONFIG_SEARCH_DIRS = (Path("/etc/dkron"), Path.home() / ".dkron", Path("config"))
_CONFIG_EXTENSIONS = ("yml", "yaml", "json", "toml")
LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}
_ENV_PREFIX = "DKRON_"


class ConfigError(ValueError):
    """A configuration source is unreadable or holds a bad value; the message is one line."""


@dataclass(frozen=True)
class AgentConfig:
    server: bool = False
    node_name: str = field(default_factory=socket.gethostname)
    # Gossip listens here (UDP and TCP); gRPC and Raft listen on its host. Dkron binds
    # to the private IP; loopback keeps a first single node private.
    bind_addr: str = "127.0.0.1:8946"
    advertise_addr: str = ""
    # Dkron listens on every interface (:8080). Without ACLs that lets any host create
    # and run jobs, so the API starts on loopback unless told where (e.g. :8080).
    http_addr: str = "127.0.0.1:8080"
    join: tuple[str, ...] = ()
    retry_join: tuple[str, ...] = ()
    retry_interval: float = 30.0  # seconds (Go duration in files, env and flags)
    retry_max: int = 0
    tags: Mapping[str, str] = field(default_factory=dict)
    encrypt: str = ""
    rpc_port: int = 6868
    advertise_rpc_port: int = 0
    bootstrap_expect: int = 0
    data_dir: Path = Path("dkron.data")
    datacenter: str = "dc1"
    region: str = "global"
    log_level: str = "info"
    dev: bool = False  # Raft state in memory only
    # Notifications (Dkron's flags; see core.notify):
    pre_webhook_endpoint: str = ""
    pre_webhook_payload: str = ""
    pre_webhook_headers: tuple[str, ...] = ()
    webhook_endpoint: str = ""
    webhook_payload: str = ""
    webhook_headers: tuple[str, ...] = ()
    mail_host: str = ""
    mail_port: int = 0
    mail_username: str = ""
    mail_password: str = field(default="", repr=False)
    mail_from: str = ""
    mail_payload: str = ""
    mail_subject_prefix: str = "[Dkron]"
    cronitor_endpoint: str = ""
    # Dkron Pro's ACLs and TLS (open build here; see docs/security.md):
    acl_enabled: bool = False  # `acl: {enabled: true}` in a file, as Dkron Pro
    cert_file: Path | None = None
    key_file: Path | None = None
    trusted_ca_file: Path | None = None
    client_cert_auth: bool = False
    client_crl_file: Path | None = None
    disable_http_tls: bool = False
    auto_tls: bool = True  # accepted for Pro's files; node calls are signed with the key
    # Ours, not Dkron's:
    insecure: bool = False  # listen beyond loopback without a cluster key
    strict_job_fields: bool = False  # 400 for unknown job keys (else a Warning header)
    plugin_dir: Path = Path("plugins.d")
    raft_port: int | None = None  # None: rpc_port + 1
    max_history: int = 100
    output_limit: int = 256_000
    webhook_on: str = "always"  # always | failure | success (Dkron #712, #288)
    # Dkron waits for running executions without limit; a bound keeps one hung job
    # from blocking a restart forever. A second signal skips the wait.
    drain_timeout: float = 30.0
    config_file: Path | None = None  # the file the values were read from, if any

    @property
    def bind_host(self) -> str:
        return _split_host_port(self.bind_addr, "bind-addr")[0] or "0.0.0.0"

    @property
    def gossip_port(self) -> int:
        port = _split_host_port(self.bind_addr, "bind-addr")[1]
        return 8946 if port is None else port

    @property
    def advertise_host(self) -> str:
        return (
            _split_host_port(self.advertise_addr, "advertise-addr")[0]
            if self.advertise_addr
            else ""
        )

    @property
    def http_host(self) -> str:
        return _split_host_port(self.http_addr, "http-addr")[0]

    @property
    def http_port(self) -> int:
        return _split_host_port(self.http_addr, "http-addr")[1] or 8080

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
        from core.notify.settings import NotifyConfig
        from core.plugins.runtime import RuntimeSettings
        from core.server.service import ServerConfig

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
            plugins=RuntimeSettings(plugin_dir=self.plugin_dir, output_limit=self.output_limit),
            notify=NotifyConfig(
                pre_webhook_endpoint=self.pre_webhook_endpoint,
                pre_webhook_payload=self.pre_webhook_payload,
                pre_webhook_headers=self.pre_webhook_headers,
                webhook_endpoint=self.webhook_endpoint,
                webhook_payload=self.webhook_payload,
                webhook_headers=self.webhook_headers,
                webhook_on=self.webhook_on,
                mail_host=self.mail_host,
                mail_port=self.mail_port,
                mail_username=self.mail_username,
                mail_password=self.mail_password,
                mail_from=self.mail_from,
                mail_payload=self.mail_payload,
                mail_subject_prefix=self.mail_subject_prefix,
                cronitor_endpoint=self.cronitor_endpoint,
            ),
        )


# -- value parsers: (raw value, setting name) -> typed value, raising ValueError(reason) ----


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "t", "true", "yes", "on"):
        return True
    if text in ("0", "f", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError("expected an integer")
    return int(text)


def _non_negative(value: object) -> int:
    number = _int(value)
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _positive(value: object) -> int:
    number = _int(value)
    if number <= 0:
        raise ValueError("must be greater than 0")
    return number


def _port(value: object) -> int:
    number = _int(value)
    if not 0 <= number <= 65535:
        raise ValueError("expected a port number (0-65535)")
    return number


def _optional_port(value: object) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number = _port(value)
    if number == 0:
        raise ValueError("expected a port number (1-65535); Raft needs a fixed port")
    return number


def _str(value: object) -> str:
    if isinstance(value, dict | list):
        raise ValueError("expected a string")
    return "" if value is None else str(value)


def _node_name(value: object) -> str:
    text = _str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def _path(value: object) -> Path:
    text = _str(value)
    if not text:
        raise ValueError("must not be empty")
    return Path(text).expanduser()


def _strings(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return tuple(_str(item) for item in value)
    # Env vars and single file values: Viper splits string slices on whitespace.
    return tuple(part for part in re.split(r"[\s,]+", _str(value)) if part)


def _duration(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s")
    if isinstance(value, int | float):
        seconds = float(value)
    elif re.fullmatch(r"\s*[0-9]+(\.[0-9]*)?\s*", str(value)):
        # Viper would read a bare number as nanoseconds; seconds is what people mean.
        seconds = float(str(value))
    else:
        from plugin_sdk.gocompat import parse_go_duration

        try:
            seconds = parse_go_duration(str(value).strip()) / 1e9
        except ValueError:
            raise ValueError("expected a duration such as 30s or 1m30s") from None
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


def _log_level(value: object) -> str:
    text = _str(value).strip().lower()
    if text not in LOG_LEVELS:
        raise ValueError("expected one of debug, info, warn, error, fatal, panic")
    return "warn" if text == "warning" else text


def _address(name: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = _str(value).strip()
        if "{{" in text:
            raise ValueError("go-sockaddr templates are not supported; give an IP address")
        if text:
            _split_host_port(text, name)
        return text

    return parse


def _encrypt(value: object) -> str:
    from core.security.keys import parse_cluster_key

    text = _str(value).strip()
    if text:
        parse_cluster_key(text)  # InvalidKey is a ValueError with the reason
    return text


def _optional_path(value: object) -> Path | None:
    text = _str(value).strip()
    return Path(text).expanduser() if text else None


def parse_tags(value: object) -> dict[str, str]:
    """``k=v`` items (list, or one string of them) or a mapping; bad items: ``invalid tag``."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        tags: dict[str, str] = {}
        for key, item in value.items():
            if isinstance(item, dict | list):
                raise ValueError(f"tag {key!r} must be a string")
            tags[str(key)] = _bool_text(item)
        return tags
    items = value if isinstance(value, list | tuple) else re.split(r"[\s,]+", _str(value).strip())
    tags = {}
    for item in items:
        text = _str(item)
        if not text:
            continue
        key, sep, tag_value = text.partition("=")
        if not sep or not key:
            raise ConfigError(f"invalid tag: '{text}'")
        tags[key] = tag_value
    return tags


def _bool_text(value: object) -> str:
    # YAML reads `server: true` as a bool; Go's map[string]string would hold "true".
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _split_host_port(text: str, name: str) -> tuple[str, int | None]:
    if text.startswith("["):  # [::1]:8080
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif ":" in text:  # bare IPv6
        return text, None
    else:
        host, port_text = text, ""
    if not port_text:
        return host, None
    try:
        return host, _port(port_text)
    except ValueError:
        raise ConfigError(f"invalid value for {name}: {text!r} has a bad port") from None


_PARSERS: dict[str, Callable[[object], Any]] = {
    "server": _bool,
    "node_name": _node_name,
    "bind_addr": _address("bind-addr"),
    "advertise_addr": _address("advertise-addr"),
    "http_addr": _address("http-addr"),
    "join": _strings,
    "retry_join": _strings,
    "retry_interval": _duration,
    "retry_max": _non_negative,
    "tags": parse_tags,
    "encrypt": _encrypt,
    "rpc_port": _port,
    "advertise_rpc_port": _port,
    "bootstrap_expect": _non_negative,
    "data_dir": _path,
    "datacenter": _node_name,
    "region": _node_name,
    "log_level": _log_level,
    "dev": _bool,
    "acl_enabled": _bool,
    "cert_file": _optional_path,
    "key_file": _optional_path,
    "trusted_ca_file": _optional_path,
    "client_cert_auth": _bool,
    "client_crl_file": _optional_path,
    "disable_http_tls": _bool,
    "auto_tls": _bool,
    "insecure": _bool,
    "strict_job_fields": _bool,
    "plugin_dir": _path,
    "raft_port": _optional_port,
    "max_history": _positive,
    "output_limit": _positive,
    "drain_timeout": _duration,
    "pre_webhook_endpoint": parse_endpoint,
    "pre_webhook_payload": _str,
    "pre_webhook_headers": parse_headers,
    "webhook_endpoint": parse_endpoint,
    "webhook_payload": _str,
    "webhook_headers": parse_headers,
    "webhook_on": parse_webhook_on,
    "mail_host": lambda value: _str(value).strip(),
    "mail_port": _port,
    "mail_username": _str,
    "mail_password": _str,
    "mail_from": _str,
    "mail_payload": _str,
    "mail_subject_prefix": _str,
    "cronitor_endpoint": parse_endpoint,
}
# Other spellings Dkron users have in their files and environments.
_ALIASES = {"tag": "tags", "devmode": "dev"}
# Settings a file may also give as a section (`acl: {enabled: true}` is acl_enabled).
_SECTIONS = ("acl",)
# Never shown in an error message, a log line or /debug/vars.
SECRET_SETTINGS = frozenset({"encrypt", "mail_password"})
# Known Dkron settings this milestone ignores: not worth a warning each start.
_KNOWN_UNSUPPORTED = {
    "ui",
    "profile",
    "raft_multiplier",
    "serf_reconnect_timeout",
    "disable_usage_stats",
    "bootstrap",
    "reconcile_interval",
}


def _key(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    return _ALIASES.get(key, key)


def _flag_name(key: str) -> str:
    return key.replace("_", "-")


# -- config files ------------------------------------------------------------------------


def find_config_file(search_dirs: Sequence[Path] = CONFIG_SEARCH_DIRS) -> Path | None:
    """The first ``dkron.{yml,yaml,json,toml}`` in the search directories, as Viper looks."""
    for directory in search_dirs:
        for extension in _CONFIG_EXTENSIONS:
            candidate = Path(directory) / f"dkron.{extension}"
            if candidate.is_file():
                return candidate
    return None


def read_config_file(path: Path) -> dict[str, object]:
    """Parse a YAML, JSON or TOML file into a mapping; errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: cannot read: {exc}") from None
    suffix = path.suffix.lower()
    data: object
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"config file {path} line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
    elif suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            # tomllib puts "(at line L, column C)" in the message itself.
            raise ConfigError(f"config file {path}: {exc}") from None
    else:
        import yaml  # only agents with a YAML file pay for it

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"config file {path}{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of settings")
    return {str(k): v for k, v in data.items()}


# -- loading -----------------------------------------------------------------------------


def _flatten_sections(values: Mapping[str, object]) -> list[tuple[str, object]]:
    flat: list[tuple[str, object]] = []
    for raw_key, value in values.items():
        section = _key(raw_key)
        if section in _SECTIONS and isinstance(value, Mapping):
            flat.extend((f"{section}_{_key(str(k))}", v) for k, v in value.items())
        else:
            flat.append((raw_key, value))
    return flat


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
    env = os.environ if env is None else env
    path = config_file if config_file is not None else find_config_file(search_dirs)
    file_values: dict[str, object] = {}
    if path is not None:
        for raw_key, value in _flatten_sections(read_config_file(path)):
            key = _key(raw_key)
            if key in _PARSERS:
                file_values[key] = value
            elif key not in _KNOWN_UNSUPPORTED:
                log.warning("config file %s: ignoring unknown or unsupported %r", path, raw_key)
    else:
        log.info("no config file found in %s", ", ".join(str(d) for d in search_dirs))

    env_values: dict[str, tuple[str, str]] = {}
    for name, value in env.items():
        if not name.startswith(_ENV_PREFIX):
            continue
        key = _key(name[len(_ENV_PREFIX) :])
        if key in _PARSERS:
            env_values[key] = (name, value)

    values: dict[str, Any] = {}
    for key, parse in _PARSERS.items():
        flag = flags.get(key)
        if flag is not None:
            raw, source = flag, f"--{_flag_name(key)}"
        elif key in env_values:
            source, raw = env_values[key]
        elif key in file_values:
            raw, source = file_values[key], f"{_flag_name(key)} in {path}"
        else:
            continue
        try:
            values[key] = parse(raw)
        except ConfigError:
            raise
        except ValueError as exc:
            if key in SECRET_SETTINGS:
                raise ConfigError(f"invalid value for {source}: {exc}") from None
            shown = raw if isinstance(raw, str) else json.dumps(raw, default=str)
            raise ConfigError(f"invalid value {shown!r} for {source}: {exc}") from None
    unknown = set(flags) - set(_PARSERS)
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    config = AgentConfig(**values, config_file=path)
    if config.raft_port is None and not 0 < config.rpc_port < 65535:
        raise ConfigError("--rpc-port 0 needs an explicit --raft-port (Raft needs a fixed port)")
    return config
