"""How a setting is declared and read: the machinery behind ``core.config``'s schema.

A setting is one field of a frozen dataclass (``core.config.AgentConfig``) declared with
:func:`setting`: its parser, ``--help`` line, metavar, flag style, other spellings and
whether it is a secret. Everything else is derived from the field's name:

========================  ======================================================
flag                      ``--bootstrap-expect`` (or the ``flag=`` given)
environment variable      ``DKRON_BOOTSTRAP_EXPECT`` (any case, ``-`` or ``_``)
config-file key           ``bootstrap-expect`` or ``bootstrap_expect`` (any case)
error messages            ``--bootstrap-expect``, ``DKRON_BOOTSTRAP_EXPECT`` or
                          ``bootstrap-expect in FILE``, whichever gave the value
========================  ======================================================

:func:`resolve` merges the sources, flag > env > file > default, parsing each value
with the one parser of its setting whatever the source; ``core.cli.agent`` generates
the typer parameters of ``dkronctl agent`` from the same table.

Why a table of our own rather than pydantic-settings or attrs: Dkron's rules are
Viper's, not pydantic's. A flag that was not given must fall through to the env and
the file (pydantic-settings' CLI source has no "not given"), env names are matched
case- and dash-insensitively with legacy aliases (``DKRON_DEVMODE``, ``tag``), Dkron
Pro's ``acl: {enabled: ...}`` section is the flat ``acl_enabled``, string slices are
split as Viper splits them, and every error is one line naming the source and never
the value of a secret. Each of these would be a custom source, validator or error
formatter over pydantic's own; the whole mechanism here is one small module with no
dependency beyond the standard library (the CLI imports it on every start).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import tomllib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "CONFIG_SEARCH_DIRS",
    "ENV_PREFIX",
    "LOG_LEVELS",
    "ConfigError",
    "Factory",
    "FlagStyle",
    "Parser",
    "Setting",
    "find_config_file",
    "read_config_file",
    "resolve",
    "setting",
    "settings_of",
]

log = logging.getLogger("dkron.config")

CONFIG_SEARCH_DIRS = (Path("/etc/dkron"), Path.home() / ".dkron", Path("config"))
_CONFIG_EXTENSIONS = ("yml", "yaml", "json", "toml")
ENV_PREFIX = "DKRON_"
LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}

# (raw value from any source) -> typed value; raises ValueError(reason), or ConfigError
# for a message that must be shown as it is.
Parser = Callable[[object], Any]
# How the flag takes its value: "value" (--rpc-port 7000), "repeat" (--join a --join b),
# "switch" (--server, no value) or "toggle" (--auto-tls/--no-auto-tls).
FlagStyle = Literal["value", "repeat", "switch", "toggle"]

_SETTING = "dkron.setting"  # the dataclass field's metadata key


class ConfigError(ValueError):
    """A configuration source is unreadable or holds a bad value; the message is one line."""


@dataclass(frozen=True)
class Setting:
    """One setting of the schema; ``name`` is its field's (and ``flags``' key)."""

    parse: Parser
    help: str
    metavar: str | None = "TEXT"
    style: FlagStyle = "value"
    flag: str = ""  # the typer declaration, when not --<name>
    aliases: tuple[str, ...] = ()  # other keys accepted in files and DKRON_* names
    secret: bool = False  # never echoed, warned about on the command line
    name: str = ""

    @property
    def option(self) -> str:
        """The flag as messages name it: ``--auto-tls`` of ``--auto-tls/--no-auto-tls``."""
        return self.declaration.split("/")[0]

    @property
    def declaration(self) -> str:
        return self.flag or f"--{self.key}"

    @property
    def key(self) -> str:
        """How messages name it in a config file: ``bootstrap-expect``."""
        return self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return f"{ENV_PREFIX}{self.name.upper()}"


@dataclass(frozen=True)
class Factory:
    """A default made afresh for each config (``Factory(dict)``), as attrs spells it."""

    make: Callable[[], Any]


def setting(
    default: Any,
    parse: Parser,
    help: str,
    *,
    metavar: str | None = "TEXT",
    style: FlagStyle = "value",
    flag: str = "",
    aliases: tuple[str, ...] = (),
    secret: bool = False,
) -> Any:
    """A dataclass field that is a setting (a secret one is left out of ``repr``)."""
    if style in ("switch", "toggle"):
        metavar = None
    metadata = {_SETTING: Setting(parse, help, metavar, style, flag, aliases, secret)}
    if isinstance(default, Factory):
        return dataclasses.field(default_factory=default.make, repr=not secret, metadata=metadata)
    return dataclasses.field(default=default, repr=not secret, metadata=metadata)


@functools.cache
def settings_of(schema: type) -> tuple[Setting, ...]:
    """The settings of a dataclass, in field order (which is ``--help``'s order)."""
    return tuple(
        dataclasses.replace(field.metadata[_SETTING], name=field.name)
        for field in dataclasses.fields(schema)
        if _SETTING in field.metadata
    )


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


# -- merging the sources -----------------------------------------------------------------


def resolve(
    settings: Sequence[Setting],
    flags: Mapping[str, object | None],
    *,
    env: Mapping[str, str],
    path: Path | None,
    search_dirs: Sequence[Path],
    sections: Collection[str] = (),
    ignored: Collection[str] = (),
) -> dict[str, Any]:
    """Parsed values of the settings given by flag (``None`` = not given) > env > file.

    ``flags`` is keyed by setting name; a setting no source gives is left out (its
    field's default applies). A file's ``section: {key: v}`` is ``section_key``; file
    keys in ``ignored`` are Dkron settings accepted without a warning. Raises
    :class:`ConfigError`, for the first bad value in ``settings``' order.
    """
    by_name = {spec.name: spec for spec in settings}
    aliases = {alias: spec.name for spec in settings for alias in spec.aliases}

    def canonical(name: str) -> str:
        key = name.strip().lower().replace("-", "_")
        return aliases.get(key, key)

    file_values: dict[str, object] = {}
    if path is not None:
        for raw_key, value in read_config_file(path).items():
            section = canonical(raw_key)
            if section in sections and isinstance(value, Mapping):
                items = [(f"{section}_{canonical(str(k))}", v) for k, v in value.items()]
            else:
                items = [(raw_key, value)]
            for item_key, item in items:
                key = canonical(item_key)
                if key in by_name:
                    file_values[key] = item
                elif key not in ignored:
                    log.warning(
                        "config file %s: ignoring unknown or unsupported %r", path, item_key
                    )
    else:
        log.info("no config file found in %s", ", ".join(str(d) for d in search_dirs))

    env_values: dict[str, tuple[str, str]] = {}
    for name, value in env.items():
        if name.startswith(ENV_PREFIX):
            key = canonical(name[len(ENV_PREFIX) :])
            if key in by_name:
                env_values[key] = (name, value)

    values: dict[str, Any] = {}
    for spec in settings:
        flag = flags.get(spec.name)
        if flag is not None:
            raw, source = flag, spec.option
        elif spec.name in env_values:
            source, raw = env_values[spec.name]
        elif spec.name in file_values:
            raw, source = file_values[spec.name], f"{spec.key} in {path}"
        else:
            continue
        try:
            values[spec.name] = spec.parse(raw)
        except ConfigError:
            raise
        except ValueError as exc:
            if spec.secret:
                raise ConfigError(f"invalid value for {source}: {exc}") from None
            shown = raw if isinstance(raw, str) else json.dumps(raw, default=str)
            raise ConfigError(f"invalid value {shown!r} for {source}: {exc}") from None
    unknown = set(flags) - set(by_name)
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    return values
