"""The server: store, scheduler, dispatcher and agent-run service wired together."""

from core.server.service import DkronServer, ServerConfig

__all__ = ["DkronServer", "ServerConfig"]
