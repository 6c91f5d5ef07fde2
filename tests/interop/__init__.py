"""Interop tests against real Go go-plugin hosts and plugins."""
