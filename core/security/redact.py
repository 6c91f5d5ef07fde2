"""Keeping secrets out of ``/debug/vars``, logs and ``ps``."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["REDACTED", "SECRET_FLAGS", "hide_secret_flags", "redact_argv"]

REDACTED = "<redacted>"
# Command-line flags whose value is a secret (Dkron's and ours).
SECRET_FLAGS = frozenset({"--encrypt", "--mail-password", "--token", "--password"})


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
