"""core.config: sources, precedence, file formats and errors (in-process)."""

from __future__ import annotations

import base64
import logging
import socket
from dataclasses import fields
from pathlib import Path

import pytest

from core.cli.agent import check_cluster_settings
from core.config import SETTINGS, AgentConfig, ConfigError, find_config_file, load_config

YAML = """\
server: true
node-name: from-file
bootstrap_expect: 1
rpc-port: 7000
data-dir: /var/lib/dkron-file
region: file-region
tags:
  role: web
  zone: a
retry-interval: 1m30s
"""
JSON = """{
  "server": true,
  "node-name": "from-file",
  "bootstrap_expect": 1,
  "rpc-port": 7000,
  "data-dir": "/var/lib/dkron-file",
  "region": "file-region",
  "tags": {"role": "web", "zone": "a"},
  "retry-interval": "1m30s"
}
"""
TOML = """\
server = true
node-name = "from-file"
bootstrap_expect = 1
rpc-port = 7000
data-dir = "/var/lib/dkron-file"
region = "file-region"
retry-interval = "1m30s"

[tags]
role = "web"
zone = "a"
"""


def load(tmp_path: Path, flags: dict[str, object] | None = None, **kwargs: object) -> AgentConfig:
    kwargs.setdefault("env", {})
    kwargs.setdefault("search_dirs", [tmp_path / "nowhere"])
    return load_config(flags or {}, **kwargs)  # type: ignore[arg-type]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_field_is_a_setting() -> None:
    assert {f.name for f in fields(AgentConfig)} - {"config_file"} == {s.name for s in SETTINGS}


def test_every_notification_setting_reaches_the_notifier() -> None:
    from core.notify import NotifyConfig

    # to_server_config passes them by name: a NotifyConfig field that is no setting would
    # silently keep its default (timeout is the notifier's own).
    names = {s.name for s in SETTINGS}
    assert {f.name for f in fields(NotifyConfig)} - {"timeout"} <= names


def test_defaults_without_any_source(tmp_path: Path) -> None:
    config = load(tmp_path)
    assert config.server is False
    assert config.node_name == socket.gethostname()
    # Loopback unless told otherwise: without ACLs the API runs anyone's jobs.
    assert config.http_addr == "127.0.0.1:8080"
    assert (config.http_host, config.http_port) == ("127.0.0.1", 8080)
    assert config.rpc_port == 6868
    assert config.effective_raft_port == 6869
    assert config.data_dir == Path("dkron.data")
    assert config.plugin_dir == Path("plugins.d")
    assert (config.max_history, config.output_limit) == (100, 256_000)
    assert config.drain_timeout == 30.0
    assert config.retry_interval == 30.0
    assert config.config_file is None


@pytest.mark.parametrize(
    ("flag", "env", "file", "expected"),
    [
        ("3000", "2000", "1000", 3000),
        (None, "2000", "1000", 2000),
        (None, None, "1000", 1000),
        (None, None, None, 6868),
    ],
)
def test_precedence_flag_env_file_default(
    tmp_path: Path, flag: str | None, env: str | None, file: str | None, expected: int
) -> None:
    path = write(tmp_path, "dkron.yml", f"rpc-port: {file}\n" if file else "{}\n")
    config = load(
        tmp_path,
        {"rpc_port": flag},
        env={"DKRON_RPC_PORT": env} if env else {},
        config_file=path,
    )
    assert config.rpc_port == expected


def test_each_setting_comes_from_its_own_best_source(tmp_path: Path) -> None:
    path = write(tmp_path, "dkron.yml", YAML)
    config = load(
        tmp_path,
        {"node_name": "from-flag"},
        env={"DKRON_REGION": "env-region", "DKRON_BOOTSTRAP_EXPECT": "1", "OTHER": "x"},
        config_file=path,
    )
    assert config.node_name == "from-flag"
    assert config.region == "env-region"
    assert config.data_dir == Path("/var/lib/dkron-file")
    assert config.datacenter == "dc1"
    assert config.config_file == path


@pytest.mark.parametrize(("name", "text"), [("a.yml", YAML), ("a.json", JSON), ("a.toml", TOML)])
def test_yaml_json_and_toml_files_mean_the_same(tmp_path: Path, name: str, text: str) -> None:
    config = load(tmp_path, config_file=write(tmp_path, name, text))
    assert config.server is True
    assert config.node_name == "from-file"
    assert config.bootstrap_expect == 1
    assert config.rpc_port == 7000
    assert config.effective_raft_port == 7001
    assert config.region == "file-region"
    assert dict(config.tags) == {"role": "web", "zone": "a"}
    assert config.retry_interval == 90.0


def test_config_file_is_found_in_the_search_dirs(tmp_path: Path) -> None:
    first, second = tmp_path / "etc", tmp_path / "home"
    first.mkdir()
    second.mkdir()
    write(second, "dkron.json", '{"region": "found"}')
    assert find_config_file([first, second]) == second / "dkron.json"
    config = load_config({}, env={}, search_dirs=[first, second])
    assert config.region == "found"
    # An earlier directory wins, as Viper's search order.
    write(first, "dkron.yaml", "region: earlier\n")
    assert load_config({}, env={}, search_dirs=[first, second]).region == "earlier"


def test_an_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*absent\.yml: not found"):
        load(tmp_path, config_file=tmp_path / "absent.yml")


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("bad.yml", "server: true\nnode-name: [unclosed\nregion: x\n", "line 3 column 7"),
        ("bad.json", '{\n  "server": true,\n  "region": \n}\n', "line 4 column 1"),
        ("bad.toml", 'server = true\nregion = "x\n', "line 2"),
    ],
)
def test_a_malformed_file_names_the_file_and_line(
    tmp_path: Path, name: str, text: str, where: str
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, config_file=path)
    message = str(caught.value)
    assert str(path) in message
    assert where in message
    assert "\n" not in message


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "dkron.yml", "- server\n- true\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load(tmp_path, config_file=path)


def test_unknown_file_keys_are_warned_about_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        tmp_path, "dkron.yml", "region: r\nstatsd-addr: 127.0.0.1:8125\nraft-multiplier: 1\n"
    )
    with caplog.at_level(logging.WARNING, logger="dkron.config"):
        config = load(tmp_path, config_file=path)
    assert config.region == "r"
    assert "statsd-addr" in caplog.text
    assert "raft-multiplier" not in caplog.text  # a known Dkron setting we do not need


def test_tag_flags_replace_the_files_tags(tmp_path: Path) -> None:
    path = write(tmp_path, "dkron.yml", YAML)
    config = load(tmp_path, {"tags": ["team=ops", "empty="]}, config_file=path)
    assert dict(config.tags) == {"team": "ops", "empty": ""}


def test_tags_from_the_environment(tmp_path: Path) -> None:
    config = load(tmp_path, env={"DKRON_TAG": "a=1 b=2"})
    assert dict(config.tags) == {"a": "1", "b": "2"}


@pytest.mark.parametrize("bad", ["foo", "=v"])
def test_malformed_tag(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {"tags": ["ok=1", bad]})
    assert str(caught.value) == f"invalid tag: '{bad}'"


@pytest.mark.parametrize(
    ("flags", "env", "file", "message"),
    [
        ({"rpc_port": "abc"}, {}, "", "invalid value 'abc' for --rpc-port: expected an integer"),
        ({}, {"DKRON_RPC_PORT": "70000"}, "", "for DKRON_RPC_PORT: expected a port number"),
        ({}, {}, "log-level: loud\n", "invalid value 'loud' for log-level in"),
        ({"drain_timeout": "soon"}, {}, "", "expected a duration such as 30s"),
        ({"server": "maybe"}, {}, "", "for --server: expected true or false"),
        ({}, {}, "max-history: 0\n", "for max-history in"),
        ({"http_addr": "127.0.0.1:http"}, {}, "", "invalid value for http-addr"),
        ({"bind_addr": "{{ GetPrivateIP }}:8946"}, {}, "", "templates are not supported"),
        ({"encrypt": "bm90IGEga2V5"}, {}, "", "must be 16, 24 or 32"),
        ({"rpc_port": "0"}, {}, "", "needs an explicit --raft-port"),
        ({"node_name": " "}, {}, "", "must not be empty"),
    ],
)
def test_bad_values_give_one_line_naming_the_source(
    tmp_path: Path, flags: dict[str, object], env: dict[str, str], file: str, message: str
) -> None:
    path = write(tmp_path, "dkron.yml", file or "{}\n")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, flags, env=env, config_file=path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_values_are_converted_from_strings(tmp_path: Path) -> None:
    key = base64.b64encode(bytes(range(16))).decode()
    config = load(
        tmp_path,
        env={
            "DKRON_SERVER": "true",
            "DKRON_DEVMODE": "1",
            "DKRON_DRAIN_TIMEOUT": "2m",
            "DKRON_JOIN": "a:1, b:2",
            "DKRON_ENCRYPT": key,
            "DKRON_LOG_LEVEL": "WARNING",
            "DKRON_RAFT_PORT": "9999",
        },
    )
    assert config.server is True and config.dev is True
    assert config.drain_timeout == 120.0
    assert config.join == ("a:1", "b:2")
    assert config.encrypt == key
    assert config.log_level == "warn"
    assert config.effective_raft_port == 9999


def test_to_server_config(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        {
            "node_name": "n1",
            "data_dir": str(tmp_path / "d"),
            "bind_addr": "127.0.0.2:8946",
            "rpc_port": "7000",
            "tags": ["a=b"],
            "max_history": "5",
            "output_limit": "1000",
            "plugin_dir": str(tmp_path / "p"),
        },
    )
    server = config.to_server_config()
    assert server.node_name == "n1"
    assert server.data_dir == tmp_path / "d"
    assert server.bind_host == "127.0.0.2"
    assert (server.rpc_port, server.raft_port) == (7000, 7001)
    assert dict(server.tags) == {"a": "b"}
    assert (server.max_history, server.output_limit) == (5, 1000)
    assert server.plugins.plugin_dir == tmp_path / "p"
    assert server.plugins.output_limit == 1000
    assert server.encrypt is None
    dev = load(tmp_path, {"dev": True}).to_server_config()
    assert dev.data_dir is None
    assert dev.bootstrap_expect == 1  # --dev alone bootstraps itself
    joining = load(tmp_path, {"server": True, "dev": True, "join": ["h:1"]}).to_server_config()
    assert joining.bootstrap_expect == 0  # ...unless it joins a cluster


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"bootstrap_expect": "1"}, "--bootstrap-expect only applies to servers (add --server)"),
        ({"server": True}, "a server needs --bootstrap-expect N to form a cluster"),
        ({}, "an agent (no --server) needs --join or --retry-join to find servers"),
        (
            {"server": True, "bootstrap_expect": "1", "rpc_port": "7000", "raft_port": "7000"},
            "rpc-port and raft-port are both 7000",
        ),
    ],
)
def test_cluster_setting_checks(tmp_path: Path, flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_cluster_settings(load(tmp_path, flags))


def test_dev_mode_needs_no_bootstrap_expect(tmp_path: Path) -> None:
    check_cluster_settings(load(tmp_path, {"server": True, "dev": True}))
    check_cluster_settings(load(tmp_path, {"server": True, "bootstrap_expect": "1"}))
    check_cluster_settings(load(tmp_path, {"server": True, "bootstrap_expect": "3"}))
    check_cluster_settings(load(tmp_path, {"server": True, "retry_join": ["h:1"]}))
    check_cluster_settings(load(tmp_path, {"join": ["h:1"]}))
