"""The plugin host: discovery, supervised executor plugins, pluggy-dispatched processors.

Import from the submodules (``core.plugins.runtime`` etc.): the package itself stays
empty so that reading, say, the discovery rules does not start up gRPC.
"""

__all__: list[str] = []
