"""PluginBroker keeps announcements as go-plugin does, without piling up silent ones."""

from __future__ import annotations

import threading

import pytest

from dkron_pb.plugin import grpc_broker_pb2 as broker_pb
from plugin_sdk.goplugin import PluginBroker
from plugin_sdk.goplugin import _broker as broker_module


def feed(broker: PluginBroker, ids: range) -> None:
    infos = [broker_pb.ConnInfo(service_id=i, network="unix", address=f"/tmp/s{i}") for i in ids]
    done = threading.Event()

    def requests():  # the host's side of StartStream, ending after the batch
        yield from infos
        done.set()

    broker._receive(requests())
    assert done.is_set()


def test_unclaimed_announcements_are_swept_on_arrival(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every announcement is immediately "old": nothing unclaimed may accumulate.
    monkeypatch.setattr(broker_module, "DIAL_TIMEOUT", -1.0)
    broker = PluginBroker()
    broker.claim(3)
    feed(broker, range(1, 1001))
    assert len(broker._announced) <= 65
    assert 3 in broker._announced  # an execution in flight keeps its id however late it dials


def test_a_released_id_is_forgotten() -> None:
    broker = PluginBroker()
    broker.claim(5)
    feed(broker, range(5, 6))
    broker.release(5)
    assert 5 not in broker._announced
