"""The leader's scheduler: a heap of next fire times over core.cron schedules."""

from core.scheduler.scheduler import Fire, Scheduler, next_fire

__all__ = ["Fire", "Scheduler", "next_fire"]
