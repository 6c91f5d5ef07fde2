"""ACL policy documents: parsing, canonical form, and Dkron Pro's path globs."""

from __future__ import annotations

import pytest

from core.acl import DEFAULT_POLICY, PolicyError, canonical_rules, parse_rules


def _grants(rules: dict[str, list[str]], path: str, capability: str) -> bool:
    document = {"path": {glob: {"capabilities": caps} for glob, caps in rules.items()}}
    return parse_rules(document).grants(path, capability)


@pytest.mark.parametrize(
    ("glob", "path", "allowed"),
    [
        ("/v1/jobs", "/v1/jobs", True),
        ("/v1/jobs", "/v1/jobs/a", False),
        ("/v1/jobs/*", "/v1/jobs/a", True),
        ("/v1/jobs/*", "/v1/jobs/a/run", False),  # one segment only
        ("/v1/jobs/*/executions*", "/v1/jobs/a/executions", True),
        ("/v1/jobs/*/executions*", "/v1/jobs/a/executions/1-n", False),
        ("/v1/jobs/*/executions/*", "/v1/jobs/a/executions/1-n", True),
        ("/v1/**", "/v1/jobs/a/executions/1-n", True),  # ** crosses segments
        ("/v1/**", "/v2/x", False),
        ("/v1/jobs/job-?", "/v1/jobs/job-1", True),
        ("/v1/jobs/job-?", "/v1/jobs/job-10", False),
        ("/v1/jobs/a.b", "/v1/jobs/aXb", False),  # a dot is a dot
    ],
)
def test_globs_match_like_dkron_pros(glob: str, path: str, allowed: bool) -> None:
    assert _grants({glob: ["read"]}, path, "read") is allowed


def test_a_capability_is_granted_only_where_listed() -> None:
    rules = {"/v1/jobs": ["list", "read"], "/v1/jobs/*": ["read", "delete"]}
    assert _grants(rules, "/v1/jobs", "list")
    assert not _grants(rules, "/v1/jobs", "create")
    assert _grants(rules, "/v1/jobs/a", "delete")
    assert not _grants(rules, "/v1/jobs/a", "update")


def test_the_default_policy_is_dkron_pros() -> None:
    rules = parse_rules(DEFAULT_POLICY)
    assert rules.grants("/v1/jobs/a/run", "create")
    assert rules.grants("/v1/jobs/a/executions/x", "read")
    assert not rules.grants("/v1/jobs/a/executions/x", "delete")
    assert not rules.grants("/debug/vars", "read")
    assert not rules.grants("/v1/acl/policies", "read")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not json", "not JSON"),
        ("[]", "JSON object"),
        ({"rules": {"path": {}}}, "do not wrap it in a 'rules' object"),
        ({"path": {"v1/jobs": {"capabilities": ["read"]}}}, "starting with '/'"),
        ({"path": {"/v1": {"capabilities": "read"}}}, "list of strings"),
        ({"path": {"/v1": {"capabilities": ["read"], "deny": True}}}, "expected"),
        ({"path": {"/v1": {"capabilities": ["sudo"]}}}, "unknown capability 'sudo'"),
    ],
)
def test_malformed_documents_say_why(document: object, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_rules(document)  # type: ignore[arg-type]


def test_canonical_form_is_stable() -> None:
    a = canonical_rules('{"path": {"/b": {"capabilities": ["read"]}, "/a": {"capabilities": []}}}')
    b = canonical_rules({"path": {"/a": {"capabilities": []}, "/b": {"capabilities": ["read"]}}})
    assert a == b
