"""The token registry: the file's format, constant-time lookups, re-reading on change."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from services.admin.auth import Tokens, parse_tokens_file, token_digest
from shared.errors import ConfigurationError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def entry(name: str, role: str, token: str) -> str:
    return f"- name: {name}\n  role: {role}\n  sha256: {token_digest(token)}\n"


def test_the_file_names_tokens_by_their_digest_only(tmp_path: Path):
    path = tmp_path / "tokens.yaml"
    path.write_text(entry("alice", "operator", "alice-secret") + entry("bob", "viewer", "bob-s"))
    tokens = Tokens(file=path)
    alice = tokens.lookup("alice-secret")
    assert alice is not None and (alice.name, alice.role) == ("alice", "operator")
    assert tokens.lookup("bob-s") is not None
    assert tokens.lookup("alice-secre") is None
    assert "alice-secret" not in path.read_text()


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("name: x", "list"),
        ("- {name: a, role: root, sha256: " + "0" * 64 + "}", "role"),
        ("- {name: a, role: admin, sha256: abc}", "sha256"),
        ("- {name: a, role: admin, sha256: " + "0" * 64 + ", token: t}", "exactly"),
        ("- {name: 'a b', role: admin, sha256: " + "0" * 64 + "}", "name"),
        (
            "- {name: a, role: admin, sha256: " + "a" * 64 + "}\n"
            "- {name: a, role: viewer, sha256: " + "b" * 64 + "}",
            "twice",
        ),
    ],
)
def test_a_bad_file_is_refused_with_its_fault_named(text: str, fault: str):
    with pytest.raises(ConfigurationError, match=fault):
        parse_tokens_file(text)


def test_no_token_at_all_is_a_configuration_error(tmp_path: Path):
    with pytest.raises(ConfigurationError, match="HOOKLINE_ADMIN_TOKENS_FILE"):
        Tokens()
    with pytest.raises(ConfigurationError, match="cannot be read"):
        Tokens(file=tmp_path / "missing.yaml")


def test_the_file_is_read_again_when_it_changes(tmp_path: Path):
    path = tmp_path / "tokens.yaml"
    path.write_text(entry("alice", "viewer", "t-alice"))
    clock = Clock()
    tokens = Tokens(file=path, check_every=1.0, clock=clock)
    assert tokens.lookup("t-alice") is not None
    path.write_text(entry("bob", "admin", "t-bob"))
    clock.now = 0.5  # not yet looked at again
    assert tokens.lookup("t-bob") is None
    clock.now = 2.0
    bob = tokens.lookup("t-bob")
    assert bob is not None and bob.role == "admin"
    assert tokens.lookup("t-alice") is None  # removed from the file: refused


def test_a_broken_change_keeps_the_tokens_loaded_before(tmp_path: Path, caplog):
    path = tmp_path / "tokens.yaml"
    path.write_text(entry("alice", "viewer", "t-alice"))
    clock = Clock()
    tokens = Tokens(file=path, clock=clock)
    path.write_text("- {name: alice, role: superuser, sha256: nope}\n")
    clock.now = 5.0
    with caplog.at_level(logging.ERROR, logger="hookline.admin.auth"):
        assert tokens.lookup("t-alice") is not None
    assert any("not valid" in r.getMessage() for r in caplog.records)


def test_the_plain_token_keeps_its_name_off_the_file(tmp_path: Path):
    path = tmp_path / "tokens.yaml"
    path.write_text(entry("admin", "viewer", "t-x"))
    with pytest.raises(ConfigurationError, match="HOOKLINE_ADMIN_TOKEN"):
        Tokens(file=path, plain=["dev-token-0123456789"])


def test_kubernetes_secret_volumes_swap_a_link(tmp_path: Path):
    """A mounted secret is a link to ..data/<file>; an update swaps ..data."""
    first, second = tmp_path / "v1", tmp_path / "v2"
    first.mkdir()
    second.mkdir()
    (first / "tokens.yaml").write_text(entry("a", "viewer", "t-a"))
    (second / "tokens.yaml").write_text(entry("b", "viewer", "t-b") + "# longer\n")
    data = tmp_path / "..data"
    data.symlink_to(first)
    mounted = tmp_path / "tokens.yaml"
    mounted.symlink_to(data / "tokens.yaml")
    clock = Clock()
    tokens = Tokens(file=mounted, clock=clock)
    assert tokens.lookup("t-a") is not None
    tmp_link = tmp_path / "..data_tmp"
    tmp_link.symlink_to(second)
    tmp_link.replace(data)
    clock.now = 2.0
    assert tokens.lookup("t-b") is not None and tokens.lookup("t-a") is None
