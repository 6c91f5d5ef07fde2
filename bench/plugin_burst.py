"""The shell plugin alone under a burst: where the scheduler bench's start lag comes from.

    python bench/plugin_burst.py [--jobs 100] [--rounds 10]

N concurrent ``Execute`` calls of ``date +%s.%N`` go to one real ``dkron-executor-shell``
process at one instant, ``--rounds`` times. Lag is the job's own clock (the time ``date``
prints) minus that instant: the plugin's share of ``bench/scheduler.py``'s start lag,
without the scheduler, Raft, the dispatcher or the AgentRun stream in front of it.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
from _common import machine_info, machine_line, percentile

from plugin_sdk.protocol import PluginClient

CONFIG = {"command": "date +%s.%N"}


async def measure(jobs: int, rounds: int) -> tuple[list[float], list[float]]:
    plugin = shutil.which("dkron-executor-shell", path=str(Path(sys.executable).parent))
    if plugin is None:
        raise SystemExit("dkron-executor-shell is not installed: pip install -e .")
    client = await PluginClient.launch([plugin], name="shell")
    lags: list[float] = []
    bursts: list[float] = []
    try:
        for _ in range(rounds):
            await asyncio.sleep(0.2)
            began = time.time()
            results = await asyncio.gather(*(client.execute("burst", CONFIG) for _ in range(jobs)))
            bursts.append((time.time() - began) * 1000)
            for result in results:
                lags.append((float(result.output.split()[0]) - began) * 1000)
    finally:
        await client.shutdown()
    return lags, bursts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    print(machine_line(machine_info()))
    lags, bursts = asyncio.run(measure(args.jobs, args.rounds))
    print(
        f"{args.jobs} concurrent executions x {args.rounds}: start lag on the job's own "
        f"clock p50 {percentile(lags, 50):.1f} ms, p99 {percentile(lags, 99):.1f} ms; "
        f"whole burst done p50 {percentile(bursts, 50):.1f} ms"
    )


if __name__ == "__main__":
    main()
