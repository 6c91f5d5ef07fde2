"""Dkron's schedule syntax over croniter, time-zone and DST correct.

``parse_schedule(spec, timezone=..., job_name=...)`` returns a ``Schedule`` whose
``next_after(instant)`` gives the next fire time in UTC (or None for never).
"""

from core.cron._tz import validate_timezone
from core.cron.errors import ScheduleError
from core.cron.schedule import AfterSchedule, Schedule, parse_schedule

__all__ = ["AfterSchedule", "Schedule", "ScheduleError", "parse_schedule", "validate_timezone"]
