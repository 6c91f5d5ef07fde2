"""Dkron's REST API v1 (plus an SSE output stream and an OpenAPI document)."""

from core.api.app import api_port, build_app, serve_api

__all__ = ["api_port", "build_app", "serve_api"]
