"""dkron-py's server: the kernel (cron, jobs, store), the services over it, and the node
that wires them (:mod:`core.node`). docs/architecture.md draws the layers."""

__all__ = ["VERSION"]

# The version members report and the OpenAPI document carries; kept beside pyproject's.
VERSION = "0.1.0"
