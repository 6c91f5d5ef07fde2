"""Keeping secrets out of ``/debug/vars``, logs and ``ps``."""

from __future__ import annotations

import os
from collections.abc import MutableMapping, Sequence

__all__ = [
    "REDACTED",
    "SECRET_ENVIRONMENT",
    "SECRET_FLAGS",
    "hide_secret_flags",
    "redact_argv",
    "scrub_secret_environment",
]

REDACTED = "<redacted>"
# Command-line flags whose value is a secret (Dkron's and ours).
SECRET_FLAGS = frozenset({"--encrypt", "--mail-password", "--token", "--password"})


# Environment variables holding secrets: read once at start, then removed, so plugins and
# the jobs they run (which inherit the agent's environment) never see them.
SECRET_ENVIRONMENT = frozenset({"DKRON_ENCRYPT", "DKRON_MAIL_PASSWORD", "DKRON_TOKEN"})


def scrub_secret_environment(environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """Remove the secret variables; returns the names removed."""
    removed = sorted(name for name in SECRET_ENVIRONMENT if name in environ)
    for name in removed:
        del environ[name]
    return removed


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with the value of every secret flag replaced (both ``--f v`` and
    ``--f=v``)."""
    shown: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            shown.append(REDACTED)
            hide_next = False
            continue
        flag, equals, _ = arg.partition("=")
        if flag in SECRET_FLAGS:
            if equals:
                shown.append(f"{flag}={REDACTED}")
            else:
                shown.append(arg)
                hide_next = True
            continue
        shown.append(arg)
    return shown


def hide_secret_flags(argv: Sequence[str]) -> bool:
    """Overwrite this process's command line (what ``ps`` and /proc show) with the
    redacted one; True if there was anything to hide."""
    shown = redact_argv(argv)
    if shown == list(argv):
        return False
    import setproctitle

    setproctitle.setproctitle(" ".join(shown))
    return True
