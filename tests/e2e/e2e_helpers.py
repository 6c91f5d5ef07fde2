"""A small urllib client for the REST API of a real agent process, and polling helpers."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from typing import Any

from agent_process import Agent, wait_for

__all__ = ["ZERO", "Api", "Reply", "finished", "parse_time", "shell_job", "wait_for"]

ZERO = "0001-01-01T00:00:00Z"


def shell_job(
    name: str, command: str, schedule: str = "@manually", **fields: Any
) -> dict[str, Any]:
    """A shell job run through ``/bin/sh -c`` (pipes, redirections and loops work)."""
    return {
        "name": name,
        "schedule": schedule,
        "executor": "shell",
        "executor_config": {"command": command, "shell": "true"},
        **fields,
    }


def parse_time(text: str) -> datetime:
    """An API time (Go RFC3339Nano, up to 9 fraction digits) as an aware datetime."""
    text = text.replace("Z", "+00:00")
    if "." in text:
        head, rest = text.split(".", 1)
        digits = rest[: len(rest) - 6]  # the offset is always 6 characters: +hh:mm
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest[-6:]}"
    return datetime.fromisoformat(text).astimezone(UTC)


def finished(execution: Mapping[str, Any]) -> bool:
    # Go's zero time shows as 0001-01-01 in UTC, or shifted (even to year 0) in a job's zone.
    return not str(execution["finished_at"]).startswith(("0001-", "0000-"))


@dataclass
class Reply:
    status: int
    headers: Message  # case-insensitive lookups, as HTTP headers are
    body: bytes
    elapsed: float = 0.0

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Api:
    agent: Agent
    timeout: float = 15.0

    @property
    def base(self) -> str:
        return str(self.agent.address)

    def call(
        self,
        method: str,
        path: str,
        json_body: object = None,
        *,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if json_body is not None:
            data = json.dumps(json_body).encode()
            sent.setdefault("Content-Type", "application/json")
        # Non-ASCII job names go on the wire percent-encoded, as any HTTP client sends them.
        url = self.base + urllib.parse.quote(path, safe="/?&=[]%:")
        request = urllib.request.Request(url, data=data, method=method, headers=sent)
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
                return Reply(response.status, response.headers, body, time.monotonic() - started)
        except urllib.error.HTTPError as error:
            body = error.read()
            return Reply(error.code, error.headers, body, time.monotonic() - started)

    def get(self, path: str) -> Reply:
        return self.call("GET", path)

    def post(self, path: str, json_body: object = None, **kwargs: Any) -> Reply:
        return self.call("POST", path, json_body, **kwargs)

    def delete(self, path: str) -> Reply:
        return self.call("DELETE", path)

    def create(self, job: Mapping[str, Any], query: str = "") -> Reply:
        reply = self.post("/v1/jobs" + query, dict(job))
        assert reply.status == 201, reply.text
        return reply

    def job(self, name: str) -> dict[str, Any]:
        reply = self.get(f"/v1/jobs/{name}")
        assert reply.status == 200, (reply.status, reply.text)
        found: dict[str, Any] = reply.json()
        return found

    def run(self, name: str) -> Reply:
        reply = self.post(f"/v1/jobs/{name}")
        assert reply.status == 200, (reply.status, reply.text)
        return reply

    def executions(self, name: str, query: str = "") -> list[dict[str, Any]]:
        reply = self.get(f"/v1/jobs/{name}/executions{query}")
        assert reply.status == 200, (reply.status, reply.text)
        found: list[dict[str, Any]] = reply.json()
        return found

    def done(self, name: str) -> list[dict[str, Any]]:
        """The job's finished executions, oldest first."""
        ordered = sorted(self.executions(name), key=lambda e: parse_time(e["started_at"]))
        return [e for e in ordered if finished(e)]

    def wait_done(self, name: str, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Poll until ``count`` executions of ``name`` have finished; returns them."""

        def enough() -> list[dict[str, Any]] | None:
            found = self.done(name)
            return found if len(found) >= count else None

        return list(wait_for(enough, timeout))

    def busy(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.get("/v1/busy").json()
        return found

    def restore(self, jobs: Sequence[Mapping[str, Any]]) -> Reply:
        """``POST /v1/restore`` with the jobs as the multipart ``file`` field."""
        boundary = uuid.uuid4().hex
        body = (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="backup.json"\r\n'
            "Content-Type: application/json\r\n\r\n"
        ).encode()
        body += json.dumps(list(jobs)).encode() + f"\r\n--{boundary}--\r\n".encode()
        return self.post(
            "/v1/restore",
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )

    def events(self, path: str) -> Generator[tuple[str, Any], None, None]:
        """Server-Sent Events of ``path`` as (event, data) pairs, as they arrive."""
        request = urllib.request.Request(self.base + path)
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            event, data = "message", ""
            for raw in response:
                line = raw.decode("utf-8").rstrip("\n")
                if line.startswith("event: "):
                    event = line[len("event: ") :]
                elif line.startswith("data: "):
                    data += line[len("data: ") :]
                elif line == "" and data:
                    yield event, json.loads(data)
                    event, data = "message", ""
