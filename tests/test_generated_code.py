"""dkron_pb must be exactly what `python proto/generate.py` produces from proto/."""

from __future__ import annotations

import subprocess
import sys

from support import REPO_ROOT


def test_generated_code_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "proto" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        "dkron_pb is stale; run `python proto/generate.py` and commit the result:\n" + result.stderr
    )


def test_wire_names_match_dkron() -> None:
    # The full method names are the wire contract with Go plugins and hosts.
    from dkron_pb.types.legacy import executor_legacy_pb2
    from dkron_pb.types.v1 import executor_pb2

    v1 = executor_pb2.DESCRIPTOR.services_by_name
    assert v1["ExecutorService"].full_name == "types.v1.ExecutorService"
    assert v1["StatusHelperService"].full_name == "types.v1.StatusHelperService"
    legacy = executor_legacy_pb2.DESCRIPTOR.services_by_name
    assert legacy["Executor"].full_name == "types.Executor"
    assert legacy["StatusHelper"].full_name == "types.StatusHelper"
    fields = executor_pb2.StatusUpdateRequest.DESCRIPTOR.fields_by_name
    assert (fields["output"].number, fields["error"].number) == (2, 3)
    request = executor_pb2.ExecuteRequest.DESCRIPTOR.fields_by_name
    assert [request[n].number for n in ("job_name", "config", "status_server")] == [1, 2, 3]
