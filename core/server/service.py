"""Where ``DkronServer`` and ``ServerConfig`` used to live: the node is built in
:mod:`core.node` now, and the leader's work, the job service and the membership
lookups are their own modules in this package."""

from core.node import VERSION, DkronServer, ServerConfig

__all__ = ["VERSION", "DkronServer", "ServerConfig"]
