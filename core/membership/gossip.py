"""Cluster membership: SWIM gossip (the ``swim-protocol`` library) behind a small interface.

The library supplies the protocol: failure detection (ping, ping-req, suspect timeout) and
dissemination of member status and metadata (``Members``, ``Worker``). This module maps
it onto Dkron's serf-like view:

- a swim member is named by its gossip address ``ip:port``; the Dkron node name, the
  tags (JSON) and a "left" marker travel in its metadata;
- statuses: ONLINE and SUSPECT show as "alive" (serf also keeps suspects alive), OFFLINE
  as "failed", a member carrying the left marker as "left"; the local node shows
  "leaving" while ``leave()`` runs;
- one entry per node name: a node restarted on another port replaces its old address.

Library behaviour corrected in ``_Worker`` (kept small on purpose):

- a lone node no longer dies on an assertion when it has no peer yet;
- gossip claiming that *we* are suspect never starts a suspect timer on ourselves (the
  library would eventually mark its own member offline and the cluster would flap);
- a refutation (our re-announcement after such a rumour) gets a clock above the
  rumour's, so third parties accept it instead of keeping the stale rumour;
- a member put in SUSPECT by gossip always gets a suspect timer, so every node reaches
  "failed" rather than only the one that detected the failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import math
import socket
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

from swimprotocol.config import BaseConfig
from swimprotocol.listener import Listener
from swimprotocol.members import Member, Members
from swimprotocol.packet import Gossip as GossipPacket
from swimprotocol.packet import GossipAck
from swimprotocol.status import Status
from swimprotocol.worker import Worker

from ._transport import SafePack, Transport, bind_sockets, split_name

__all__ = ["DEFAULT_SECRET", "STATUS_CODES", "Gossip", "MemberInfo"]

log = logging.getLogger("dkron.membership")

#: Signing secret used without ``--encrypt``. It is public, so it only keeps packets from
#: unrelated programs and corrupted datagrams out (integrity against accidents); it gives
#: no authentication. A fixed value rather than swimprotocol's ``uuid.getnode()`` default,
#: which differs per machine and would split a multi-host cluster.
DEFAULT_SECRET = b"dkron-py gossip: no --encrypt key (integrity against accidents only)"

#: serf's member status numbers (serf.MemberStatus), as shown in Dkron's Member JSON.
STATUS_CODES: Mapping[str, int] = {"none": 0, "alive": 1, "leaving": 2, "left": 3, "failed": 4}

_META_NAME = "name"
_META_TAGS = "tags"
_META_LEFT = "left"
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})

MemberStatus = Literal["alive", "leaving", "left", "failed"]


@dataclass(frozen=True)
class MemberInfo:
    """One node as the cluster sees it (serf.Member's fields that Dkron uses)."""

    name: str
    addr: str
    port: int
    tags: Mapping[str, str] = field(hash=False)
    status: str

    @property
    def status_code(self) -> int:
        """serf's number for ``status``: 1 alive, 2 leaving, 3 left, 4 failed (0 unknown)."""
        return STATUS_CODES.get(self.status, 0)


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` as (host, port); ValueError with the reason otherwise."""
    if not isinstance(address, str):
        raise TypeError(f"gossip address must be a string 'host:port', not {address!r}")
    text = address.strip()
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host:
        raise ValueError(f"invalid gossip address {address!r}: expected host:port")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid gossip address {address!r}: port must be 1-65535")
    return host, int(port_text)


def _check_tags(tags: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(tags, Mapping):
        raise TypeError(f"tags must be a mapping of str to str, not {type(tags).__name__}")
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"tag {key!r}={value!r}: tag keys and values must be strings")
    return dict(tags)


def _positive(name: str, value: float) -> float:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


def _decode(metadata: Mapping[str, bytes]) -> tuple[str, dict[str, str], bool] | None:
    """(node name, tags, left) from a member's metadata; None for a non-dkron member."""
    if metadata is Member.METADATA_UNKNOWN:
        return None
    try:
        name = metadata[_META_NAME].decode("utf-8")
        tags = json.loads(metadata.get(_META_TAGS, b"{}"))
    except (KeyError, UnicodeDecodeError, ValueError):
        return None
    if not name or not isinstance(tags, dict):
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        return None
    return name, tags, _META_LEFT in metadata


class _Hook(Listener[Member]):
    """The Members listener, also telling Gossip about every member change synchronously."""

    def __init__(self, hook: Callable[[Member], None]) -> None:
        super().__init__()
        self._hook = hook

    def notify(self, item: Member) -> None:
        super().notify(item)
        self._hook(item)


class _Worker(Worker):
    """swimprotocol's Worker with the corrections listed in the module docstring."""

    def __init__(self, config: BaseConfig, members: Members) -> None:
        super().__init__(config, members)
        self.last_heard: dict[str, float] = {}
        self.heard: set[asyncio.Event] = set()

    def _notify_waiting(self, member: Member) -> None:
        # Called for every packet received: join_wait and leave wait on it.
        self.last_heard[member.name] = time.monotonic()
        for event in self.heard:
            event.set()
        super()._notify_waiting(member)

    async def run_failure_detection(self) -> NoReturn:
        # The library asserts there is a peer to ping; a lone first node must wait instead.
        while True:
            for target in self.members.find(1):
                self.run_subtask(self.check(target))
            await asyncio.sleep(self.config.ping_interval)

    def _handle_status(self, target: Member, status: Status) -> None:
        if target.local:
            return
        super()._handle_status(target, status)

    def _apply_gossip(
        self, local: Member, source: Member, member: Member, gossip: GossipPacket
    ) -> GossipAck:
        members = self.members
        if member.local and gossip.clock >= members._next_clock:
            members._next_clock = gossip.clock + 1
        ack = super()._apply_gossip(local, source, member, gossip)
        if not member.local and member.status == Status.SUSPECT and member not in self._suspect:
            self._suspect[member] = asyncio.ensure_future(self._suspect_wait(member))
        return ack

    def pending_tasks(self) -> list[asyncio.Task[Any]]:
        return [*self._running, *self._suspect.values()]


class Gossip:
    """This node's membership in the cluster.

    ``start()`` binds UDP and TCP on ``bind_host:bind_port`` (port 0 picks a free port)
    and begins gossiping; ``close()`` or ``leave()`` stops it. Everything runs on the
    event loop that called ``start()``; instances are independent of one another.
    """

    def __init__(
        self,
        *,
        node_name: str,
        bind_host: str,
        bind_port: int,
        tags: Mapping[str, str],
        secret: str | None = None,
        advertise_host: str | None = None,
        ping_interval: float = 0.5,
        ping_timeout: float = 0.3,
        suspect_timeout: float = 3.0,
        sync_interval: float = 0.2,
    ) -> None:
        if not isinstance(node_name, str) or not node_name.strip():
            raise ValueError("node_name must be a non-empty string")
        if not isinstance(bind_port, int) or not 0 <= bind_port < 65536:
            raise ValueError(f"bind_port must be 0-65535, not {bind_port!r}")
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise ValueError("secret must be a non-empty string, or None for no key")
        if advertise_host is None and bind_host.strip("[]") in _WILDCARDS:
            raise ValueError(
                f"gossip bound to the wildcard address {bind_host!r} needs an advertise "
                "host: the address other nodes use to reach this one"
            )
        if advertise_host is not None and advertise_host.strip("[]") in _WILDCARDS:
            raise ValueError(f"cannot advertise the wildcard address {advertise_host!r}")
        self._node_name = node_name
        self._bind_host = bind_host.strip("[]")
        self._port = bind_port
        self._advertise = advertise_host.strip("[]") if advertise_host else None
        self._tags = _check_tags(tags)
        self._secret = secret.encode("utf-8") if secret is not None else DEFAULT_SECRET
        self._ping_interval = _positive("ping_interval", ping_interval)
        self._ping_timeout = _positive("ping_timeout", ping_timeout)
        self._suspect_timeout = _positive("suspect_timeout", suspect_timeout)
        self._sync_interval = _positive("sync_interval", sync_interval)

        self._state: Literal["new", "running", "closed"] = "new"
        self._local_status: MemberStatus = "alive"
        self._members: Members | None = None
        self._worker: _Worker | None = None
        self._transport: Transport | None = None
        self._family = socket.AF_INET
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pending_joins: list[tuple[str, int]] = []
        self._callbacks: list[Callable[[MemberInfo], None]] = []
        self._last: dict[str, MemberInfo] = {}  # node name -> last reported view
        self._name_of: dict[str, str] = {}  # swim member name -> node name

    # ----------------------------------------------------------------- properties

    @property
    def address(self) -> str:
        """``host:port`` other nodes use to reach this node's gossip (IPv6 in brackets)."""
        if self._port == 0:
            raise RuntimeError("the gossip port is chosen by start(); call it first")
        host = self._advertise or self._bind_host
        return f"[{host}]:{self._port}" if ":" in host else f"{host}:{self._port}"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind UDP and TCP and start gossiping. OSError (with the address) if taken."""
        if self._state != "new":
            raise RuntimeError("Gossip.start() can only be called once")
        bind_ip = await self._resolve(self._bind_host, passive=True)
        udp_sock, tcp_sock = bind_sockets(bind_ip, self._port)
        try:
            self._family = udp_sock.family
            self._port = udp_sock.getsockname()[1]
            advertise = await self._resolve(self._advertise) if self._advertise else bind_ip
            config = BaseConfig(
                secret=self._secret,
                local_name=f"{advertise}:{self._port}",
                peers=[],
                local_metadata=self._metadata(),
                ping_interval=self._ping_interval,
                ping_timeout=self._ping_timeout,
                # On a LAN the indirect round trip is as fast as the direct one; the
                # library's 3x default would only delay failure detection.
                ping_req_timeout=self._ping_timeout,
                suspect_timeout=self._suspect_timeout,
                sync_interval=self._sync_interval,
            )
            members = Members(config)
            members.listener = _Hook(self._member_changed)
            worker = _Worker(config, members)
            transport = Transport(
                SafePack(config.signatures), udp_sock, tcp_sock, worker.recv_queue.put_nowait
            )
            await transport.start()
        except BaseException:
            udp_sock.close()
            tcp_sock.close()
            raise
        self._advertise = advertise
        self._members, self._worker, self._transport = members, worker, transport
        self._state = "running"
        self._spawn(transport.run_sender(worker.send_queue))
        # The Worker's three loops, each restarted if the library raises on odd input
        # (Worker.run() would leave the other two running and stop the third for good).
        self._spawn(self._supervise("packet handler", worker._run_handler))
        self._spawn(self._supervise("failure detection", worker.run_failure_detection))
        self._spawn(self._supervise("dissemination", worker.run_dissemination))
        self._member_changed(members.local)
        log.debug("gossip: %s listening on %s", self._node_name, self.address)
        pending, self._pending_joins = self._pending_joins, []
        if pending:
            self._spawn(self._add_peers(pending))

    async def close(self) -> None:
        """Stop without leaving (others will see this node fail); idempotent."""
        if self._state == "closed":
            return
        self._state = "closed"
        worker = self._worker
        for _ in range(3):  # cancelled tasks may have spawned subtasks of their own
            tasks = list(self._tasks) + (worker.pending_tasks() if worker else [])
            tasks = [t for t in tasks if not t.done()]
            if not tasks:
                break
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._transport is not None:
            await self._transport.close()

    async def leave(self, timeout: float = 2.0) -> None:
        """Announce "left" to every alive member (waiting for their acks up to
        ``timeout`` seconds), then stop."""
        if not isinstance(timeout, int | float) or timeout < 0:
            raise ValueError(f"leave timeout must be >= 0 seconds, not {timeout!r}")
        if self._state == "new":
            self._local_status = "left"
            self._state = "closed"
            return
        if self._state == "closed":
            return
        members, worker = self._members, self._worker
        assert members is not None and worker is not None
        local = members.local
        self._local_status = "leaving"
        members.update(local, new_metadata=self._metadata(left=True))
        # Everyone reachable: alive by failure detection, heard from lately (a node that
        # just pinged us stays OFFLINE in the library until we probe it ourselves), or
        # learned of lately (a node that joined a moment ago may not have probed everyone
        # yet; without this a server it had not heard from saw it fail, not leave).
        recent = time.monotonic() - self._suspect_timeout
        learned_since = time.time() - self._suspect_timeout  # the library's wall clock
        targets = [
            m
            for m in members.non_local
            if m.status & Status.AVAILABLE
            or worker.last_heard.get(m.name, -1.0) >= recent
            or m.status_time >= learned_since
        ]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        resend = max(self._ping_timeout, 0.05)
        while True:
            # _needs_gossip: the target has not acknowledged our latest clock yet.
            pending = [m for m in targets if m._needs_gossip(local)]
            remaining = deadline - loop.time()
            if not pending or remaining <= 0:
                break
            for target in pending:
                worker.run_subtask(worker.disseminate(target))
            await self._wait_heard(min(resend, remaining))
        if pending:
            log.warning(
                "gossip: leave not acknowledged by %s; they will see this node fail",
                ", ".join(sorted(m.name for m in pending)),
            )
        self._local_status = "left"
        self._member_changed(local)
        await self.close()

    # ---------------------------------------------------------------------- joins

    def join(self, addresses: Iterable[str]) -> None:
        """Add ``host:port`` addresses as peers to ping; returns at once."""
        parsed = [parse_address(a) for a in _as_list(addresses)]
        if self._state == "closed":
            raise RuntimeError("gossip is closed")
        if self._state == "new":
            self._pending_joins.extend(parsed)
            return
        self._spawn(self._add_peers(parsed))

    async def join_wait(self, addresses: Iterable[str], timeout: float) -> int:
        """Ping the addresses; how many distinct ones answered within ``timeout`` seconds."""
        parsed = [parse_address(a) for a in _as_list(addresses)]
        if not isinstance(timeout, int | float) or timeout < 0:
            raise ValueError(f"join timeout must be >= 0 seconds, not {timeout!r}")
        worker = self._require_running()
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        deadline = loop.time() + timeout
        targets = await self._add_peers(parsed)
        resend_every = max(self._ping_timeout, 0.05)
        next_resend = loop.time() + resend_every
        while True:
            answered = [t for t in targets if worker.last_heard.get(t.name, -1.0) >= started]
            now = loop.time()
            if len(answered) == len(targets) or now >= deadline or self._state != "running":
                return len(answered)
            if now >= next_resend:
                for target in targets:
                    if target not in answered:
                        worker.run_subtask(worker.check(target))
                next_resend = now + resend_every
            await self._wait_heard(min(next_resend, deadline) - now)

    async def retry_join(
        self, addresses: Iterable[str], interval: float, max_attempts: int
    ) -> bool:
        """Join, retrying every ``interval`` seconds up to ``max_attempts`` (0: forever).

        True as soon as one address answered; False when the attempts ran out (or the
        node was closed). Each failed attempt is logged.
        """
        listed = _as_list(addresses)
        for address in listed:
            parse_address(address)
        interval = _positive("retry interval", interval)
        if not isinstance(max_attempts, int) or max_attempts < 0:
            raise ValueError(f"retry max must be a whole number >= 0, not {max_attempts!r}")
        if not listed:
            raise ValueError("retry-join needs at least one address")
        if self._state == "running":
            # Every server may be given the same list, its own address included.
            listed = [a for a in listed if a != self.address]
            if not listed:
                log.info("gossip: retry-join: only this node's address given; others join it")
                return True
        loop = asyncio.get_running_loop()
        attempt = 0
        while self._state == "running":
            attempt += 1
            began = loop.time()
            if await self.join_wait(listed, timeout=interval):
                log.info("gossip: retry-join: joined through %s", ", ".join(listed))
                return True
            if self._state != "running":
                break
            of = f"/{max_attempts}" if max_attempts else ""
            log.warning(
                "gossip: retry-join attempt %d%s: none of %s answered within %gs",
                attempt, of, ", ".join(listed), interval,
            )  # fmt: skip
            if max_attempts and attempt >= max_attempts:
                log.error(
                    "gossip: retry-join: giving up after %d attempts (%s)",
                    attempt, ", ".join(listed),
                )  # fmt: skip
                return False
            # An unresolvable address returns at once: keep to the interval anyway.
            pause = interval - (loop.time() - began)
            if pause > 0:
                await asyncio.sleep(pause)
        if self._state == "new":
            raise RuntimeError("Gossip.start() must be called before retry_join()")
        return False

    # ------------------------------------------------------------------ the view

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Replace this node's tags; the change is gossiped to everyone."""
        self._tags = _check_tags(tags)
        if self._state == "running":
            assert self._members is not None
            self._members.update(self._members.local, new_metadata=self._metadata())

    def members(self) -> list[MemberInfo]:
        """Every node known, including this one, one entry per node name, sorted by name.

        Addresses given to join() that never answered are not listed.
        """
        if self._members is None:
            return [self.local()]
        by_name: dict[str, list[Member]] = {}
        for member in self._members:
            decoded = _decode(member.metadata)
            if decoded is not None:
                by_name.setdefault(decoded[0], []).append(member)
        views = (self._effective(group) for group in by_name.values())
        return sorted((v for v in views if v is not None), key=lambda m: (m.name, m.addr, m.port))

    def local(self) -> MemberInfo:
        """This node."""
        if self._members is None:
            host = self._advertise or self._bind_host
            return MemberInfo(
                self._node_name, host, self._port, dict(self._tags), self._local_status
            )
        info = self._info(self._members.local)
        assert info is not None
        return info

    def on_change(self, callback: Callable[[MemberInfo], None]) -> None:
        """Call ``callback(member)`` on the event loop whenever a node's status or tags
        change (join, failure, leave, tag update), this node included."""
        self._callbacks.append(callback)

    # ------------------------------------------------------------------ internals

    def _metadata(self, *, left: bool = False) -> dict[str, bytes]:
        metadata = {
            _META_NAME: self._node_name.encode("utf-8"),
            _META_TAGS: json.dumps(self._tags, sort_keys=True, separators=(",", ":")).encode(),
        }
        if left or self._local_status in ("leaving", "left"):
            metadata[_META_LEFT] = b"1"
        return metadata

    def _info(self, member: Member) -> MemberInfo | None:
        decoded = _decode(member.metadata)
        address = split_name(member.name)
        if decoded is None or address is None:
            return None
        name, tags, left = decoded
        status: MemberStatus
        if member.local:
            status = self._local_status
        elif left:
            status = "left"
        elif member.status & Status.AVAILABLE:
            status = "alive"
        else:
            status = "failed"
        return MemberInfo(name, address[0], address[1], tags, status)

    def _effective(self, group: Iterable[Member]) -> MemberInfo | None:
        """The entry shown for one node name seen at several addresses: this node if it
        is ours, else an alive one, else the most recently changed."""

        def rank(member: Member) -> tuple[bool, bool, float]:
            info = self._info(member)
            alive = info is not None and info.status == "alive"
            return (member.local, alive, member.status_time)

        best = max(group, key=rank, default=None)
        return None if best is None else self._info(best)

    def _member_changed(self, member: Member) -> None:
        if self._members is None:
            return  # Members.__init__ announcing the local member; start() reports it
        names = set()
        decoded = _decode(member.metadata)
        old_name = self._name_of.get(member.name)
        if old_name is not None:
            names.add(old_name)
        if decoded is not None:
            self._name_of[member.name] = decoded[0]
            names.add(decoded[0])
        for name in names:
            group = [m for m in self._members if self._name_of.get(m.name) == name]
            view = self._effective(group)
            if view is None:
                self._last.pop(name, None)
                continue
            if self._last.get(name) != view:
                self._last[name] = view
                if self._callbacks:
                    asyncio.get_running_loop().call_soon(self._report, view)

    def _report(self, info: MemberInfo) -> None:
        for callback in list(self._callbacks):
            try:
                callback(info)
            except Exception:
                log.exception("gossip: on_change callback %r failed", callback)

    async def _supervise(self, what: str, loop_fn: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        while True:
            try:
                await loop_fn()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("gossip: %s failed; restarting it", what)
                await asyncio.sleep(self._ping_interval)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _require_running(self) -> _Worker:
        if self._state == "new":
            raise RuntimeError("Gossip.start() must be called first")
        if self._state == "closed" or self._worker is None:
            raise RuntimeError("gossip is closed")
        return self._worker

    async def _wait_heard(self, timeout: float) -> None:
        """Until any packet arrives or ``timeout`` seconds pass."""
        assert self._worker is not None
        event = asyncio.Event()
        self._worker.heard.add(event)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), max(timeout, 0.0))
        finally:
            self._worker.heard.discard(event)

    async def _resolve(self, host: str, *, passive: bool = False) -> str:
        """An IP literal for ``host`` (swim names must be IPs: see _transport.send)."""
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        family = socket.AF_UNSPEC if passive else self._family
        try:
            infos = await loop.getaddrinfo(host, None, family=family, type=socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            raise OSError(f"gossip cannot resolve host {host!r}: {exc.strerror}") from exc
        if not infos:
            raise OSError(f"gossip cannot resolve host {host!r}")
        return str(infos[0][4][0])

    async def _add_peers(self, addresses: Iterable[tuple[str, int]]) -> list[Member]:
        """Make the addresses known members (pinged from now on) and ping them now."""
        worker = self._require_running()
        members = worker.members
        found: dict[str, Member] = {}
        for host, port in addresses:
            try:
                ip = await self._resolve(host)
            except OSError as exc:
                log.warning("gossip: cannot join %s:%d: %s", host, port, exc)
                continue
            if (ipaddress.ip_address(ip).version == 6) != (self._family == socket.AF_INET6):
                log.warning(
                    "gossip: cannot join %s:%d: address family differs from ours", host, port
                )
                continue
            name = f"{ip}:{port}"
            if self._state != "running" or name == members.local.name or name in found:
                continue
            member = members.get(name)
            found[name] = member
            worker.run_subtask(worker.check(member))
        return list(found.values())


def _as_list(addresses: Iterable[str]) -> list[str]:
    if isinstance(addresses, str):
        return [addresses]  # a lone "host:port" is one address, not its characters
    return list(addresses)
