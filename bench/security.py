"""What security costs: node call credentials per execution, ACL checks per request,
each beside the same work without them, in one run.

    python bench/security.py [--runs 300] [--burst 600] [--requests 3000] [--rounds 3]

- **Per execution**: one real single-node server (real Raft, real shell plugin, real
  loopback gRPC from the leader to its own agent) without a cluster key and with one
  (every AgentRun signed and verified). Sequential runs of `true` give the latency of
  one execution (run_job to finished in the store); a burst of concurrent runs gives
  executions/s. Rounds alternate keyless and keyed so drift hits both.
- **Per request**: the real API over HTTP, ACLs off and on (a client token with Dkron's
  default policy, 12 path rules), sequential GET /v1/jobs/{job}: p50/p99 latency.
- The bare costs: signing + verifying one AgentRun's credentials, and one ACL check.

Prints a table and writes bench/results/security.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from core.api import build_app
from core.jobs.model import Job
from core.node import DkronServer, ServerConfig
from core.plugins.runtime import RuntimeSettings
from core.security.keys import ClusterKey
from core.security.rpc import CallSigner, CallVerifier
from dkron_pb.types.v1 import agent_pb2, dkron_pb2

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_info, machine_line, percentile, write_report

KEY = base64.b64encode(os.urandom(16)).decode()


def _config(data_dir: Path, *, keyed: bool, acl: bool = False) -> ServerConfig:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        raft_port = probe.getsockname()[1]
    return ServerConfig(
        node_name="bench",
        data_dir=data_dir,
        rpc_port=0,
        raft_port=raft_port,
        encrypt=KEY if keyed else None,
        acl_enabled=acl,
        max_history=100_000,
        plugins=RuntimeSettings(plugin_dir=data_dir / "plugins", load_entry_points=False),
    )


async def _leader(server: DkronServer) -> None:
    while not (server.is_leader and server.scheduler.running):
        await asyncio.sleep(0.01)


def _finished(server: DkronServer, job: str) -> int:
    return sum(1 for e in server.store.state.executions_of(job) if e.finished_at is not None)


async def _wait_finished(server: DkronServer, job: str, count: int) -> None:
    while _finished(server, job) < count:
        await asyncio.sleep(0.0005)


async def executions(keyed: bool, runs: int, burst: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        server = DkronServer(_config(Path(tmp), keyed=keyed))
        await server.start()
        try:
            await _leader(server)
            job = Job(
                name="bench", schedule="@manually", executor="shell",
                executor_config={"command": "true"},
            )  # fmt: skip
            await server.set_job(job)
            await server.run_job("bench")  # warm the plugin and the channel
            await _wait_finished(server, "bench", 1)
            latencies = []
            for index in range(runs):
                started = time.perf_counter()
                await server.run_job("bench")
                await _wait_finished(server, "bench", index + 2)
                latencies.append((time.perf_counter() - started) * 1000)
            done = _finished(server, "bench")
            started = time.perf_counter()
            for _ in range(burst):
                await server.run_job("bench")
            await _wait_finished(server, "bench", done + burst)
            elapsed = time.perf_counter() - started
        finally:
            await server.stop(drain_timeout=5)
    return {
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p99_ms": percentile(latencies, 99),
        "burst_per_s": burst / elapsed,
    }


async def requests(acl: bool, count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        server = DkronServer(_config(Path(tmp), keyed=True, acl=acl))
        await server.start()
        runner = web.AppRunner(build_app(server))
        try:
            await _leader(server)
            headers: dict[str, str] = {}
            if acl:
                await server.acl.bootstrap()
                issued = await server.acl.create_token("bench", "client", ["default"])
                headers = {"Authorization": f"Bearer {issued.secret}"}
            await server.set_job(Job(name="bench", schedule="@manually", executor="shell"))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/jobs/bench"
            latencies = []
            async with aiohttp.ClientSession() as session:
                for index in range(count + 100):
                    started = time.perf_counter()
                    async with session.get(url, headers=headers) as response:
                        await response.read()
                        assert response.status == 200, response.status
                    if index >= 100:  # warm-up
                        latencies.append((time.perf_counter() - started) * 1000)
        finally:
            await runner.cleanup()
            await server.stop(drain_timeout=5)
    return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99)}


def bare_costs(samples: int = 20_000) -> dict[str, float]:
    key = ClusterKey(KEY)
    signer, verifier = CallSigner(key.rpc), CallVerifier(key.rpc)
    job = dkron_pb2.Job(
        name="bench", executor="shell", executor_config={"command": "echo hello", "shell": "true"}
    )
    request = agent_pb2.AgentRunRequest(
        job=job, execution=dkron_pb2.Execution(job_name="bench", node_name="n"), term=3
    )
    method = "/types.v1.AgentService/AgentRun"
    started = time.perf_counter()
    for _ in range(samples):
        assert verifier.refusal(method, request, signer.sign(method, request)) is None
    credentials_us = (time.perf_counter() - started) / samples * 1e6

    from core.acl import AclService
    from core.store.state import StoreState

    async def acl_check() -> float:
        state = StoreState()

        async def apply(command: Any) -> Any:
            return state.apply(command)

        service = AclService(state, apply, enabled=True)
        await service.bootstrap()
        issued = await service.create_token("bench", "client", ["default"])
        begin = time.perf_counter()
        for _ in range(samples):
            assert service.check(issued.secret, "/v1/jobs/a/executions/b", ("read",)) is None
        return (time.perf_counter() - begin) / samples * 1e6

    return {"credentials_us": credentials_us, "acl_check_us": asyncio.run(acl_check())}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {"keyless": [], "keyed": []}
    calls: dict[str, list[dict[str, float]]] = {"acl_off": [], "acl_on": []}
    for _ in range(args.rounds):
        for name, keyed in (("keyless", False), ("keyed", True)):
            runs[name].append(await executions(keyed, args.runs, args.burst))
        for name, acl in (("acl_off", False), ("acl_on", True)):
            calls[name].append(await requests(acl, args.requests))

    def median(rounds: list[dict[str, float]]) -> dict[str, float]:
        return {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}

    return {
        "executions": {name: median(rounds) for name, rounds in runs.items()},
        "requests": {name: median(rounds) for name, rounds in calls.items()},
        "rounds": {"executions": runs, "requests": calls},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="sequential executions per round")
    parser.add_argument("--burst", type=int, default=600, help="concurrent executions per round")
    parser.add_argument("--requests", type=int, default=3000, help="API requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "security.json"
    )
    args = parser.parse_args()
    machine = machine_info()
    print(machine_line(machine))
    bare = bare_costs()
    results = asyncio.run(measure(args))
    results["bare"] = bare
    ex, rq = results["executions"], results["requests"]
    plain, keyed, off, on = ex["keyless"], ex["keyed"], rq["acl_off"], rq["acl_on"]
    rows = [
        ("execution latency p50 (ms)", plain["latency_p50_ms"], keyed["latency_p50_ms"]),
        ("execution latency p99 (ms)", plain["latency_p99_ms"], keyed["latency_p99_ms"]),
        ("burst executions/s", plain["burst_per_s"], keyed["burst_per_s"]),
        ("GET /v1/jobs/{job} p50 (ms)", off["p50_ms"], on["p50_ms"]),
        ("GET /v1/jobs/{job} p99 (ms)", off["p99_ms"], on["p99_ms"]),
    ]
    print(f"{'':32} {'without':>10} {'with':>10} {'change':>8}")
    for label, without, with_ in rows:
        change = (with_ - without) / without * 100 if without else float("nan")
        print(f"{label:32} {without:10.2f} {with_:10.2f} {change:+7.1f}%")
    print(f"sign + verify one AgentRun's credentials: {bare['credentials_us']:.1f} us")
    print(f"one ACL check (default policy, 12 rules): {bare['acl_check_us']:.1f} us")
    write_report(args.out, machine, args, {}, results)


if __name__ == "__main__":
    main()
