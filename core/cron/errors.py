"""The one exception type of the schedule parser."""

from __future__ import annotations

__all__ = ["ScheduleError"]


class ScheduleError(ValueError):
    """A schedule spec or time zone that cannot be used; the message says why."""
