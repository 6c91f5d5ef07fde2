"""The leader's scheduler: a heap of next fire times over core.cron schedules."""

from core.scheduler.scheduler import (
    LATE_TOLERANCE,
    Fire,
    Scheduler,
    next_fire,
    plan_next,
    planned_next,
)

__all__ = ["LATE_TOLERANCE", "Fire", "Scheduler", "next_fire", "plan_next", "planned_next"]
