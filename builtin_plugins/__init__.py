"""The plugins dkron-py ships, each its own ``dkron-executor-*`` / ``dkron-processor-*`` binary.

``shell`` and ``http`` are executors; ``log_processor``, ``files_processor`` and
``syslog_processor`` are processors, each also offering a pluggy ``plugin`` for
in-process use. They are built on :mod:`plugin_sdk` like any third-party plugin, and
the host never imports them.
"""

__all__: list[str] = []
