"""Scheduler.stop() must not hang when a job change lands just before it (Python 3.11's
asyncio.wait_for swallows a cancel that races the awaited event)."""

from __future__ import annotations

import asyncio
import time

from core.jobs.model import Job
from core.scheduler.scheduler import Fire, Scheduler


async def _ignore(_fires: list[Fire]) -> None:
    return None


async def test_stop_wins_over_a_job_change_that_races_it() -> None:
    scheduler = Scheduler(_ignore)
    scheduler.set_job(Job(name="a", schedule="@yearly", executor="shell"))
    scheduler.start()
    for _ in range(5):  # let the loop park in its wait for the next fire
        await asyncio.sleep(0)
    scheduler.set_job(Job(name="b", schedule="@yearly", executor="shell"))
    await asyncio.sleep(0)  # the wait sees the change; the loop has not resumed yet
    task = scheduler._task
    assert task is not None
    began = time.monotonic()
    # The timeout only bounds a regression; stop() itself swallows the cancel it causes.
    async with asyncio.timeout(2.0):
        await scheduler.stop()
    assert task.done(), "the scheduler loop is still running after stop()"
    assert time.monotonic() - began < 1.0, "stop() only returned because it was cancelled"
