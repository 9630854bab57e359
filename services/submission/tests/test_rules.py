"""The input rules, each case, without I/O."""

from __future__ import annotations

import pytest
from touchstone.shared.errors import InvalidInputError
from touchstone.submission import rules
from touchstone.submission.config import PRIVATE_NETWORKS

PROD = rules.SourcePolicy.build(False, PRIVATE_NETWORKS, ["localhost", "*.localhost", "*.internal"])
LOCAL = rules.SourcePolicy.build(True, PRIVATE_NETWORKS, ["localhost", "*.localhost", "*.internal"])


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/org/fs.git",
        "https://gitlab.example.com:8443/group/sub/fs",
        "ssh://git@github.com/org/fs.git",
        "ssh://git@github.com:2222/org/fs.git",
        "git@github.com:org/fs.git",
        "github.com:org/fs.git",
        "https://8.8.8.8/org/fs.git",
    ],
)
def test_public_https_and_ssh_urls_are_accepted(url: str) -> None:
    assert rules.check_git_url(url, PROD) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ext::sh -c touch% /tmp/pwned", "whitespace"),
        ("ext::ssh", "transport helpers"),
        ("fd::17", "transport helpers"),
        ("file:///etc/passwd", "file://"),
        ("FILE:///srv/repo", "file://"),
        ("/srv/repos/fs", "local paths"),
        ("./fs", "local paths"),
        ("../fs", "local paths"),
        ("~/fs", "local paths"),
        ("-oProxyCommand=touch%20/tmp/x", "start with '-'"),
        ("--upload-pack=evil", "start with '-'"),
        ("https://user:secret@github.com/org/fs.git", "credentials"),
        ("https://ghp_token@github.com/org/fs.git", "credentials"),
        ("ssh://git:secret@github.com/org/fs.git", "credentials"),
        ("http://github.com/org/fs.git", "scheme"),
        ("ftp://github.com/org/fs.git", "scheme"),
        ("git://github.com/org/fs.git", "scheme"),
        ("https://127.0.0.1/org/fs.git", "denied network"),
        ("https://127.1/org/fs.git", "denied network"),
        ("https://2130706433/org/fs.git", "denied network"),
        ("https://0x7f.0.0.1/org/fs.git", "denied network"),
        ("https://0177.0.0.1/org/fs.git", "denied network"),
        ("https://10.1.2.3/org/fs.git", "denied network"),
        ("https://172.16.0.9/org/fs.git", "denied network"),
        ("https://192.168.1.10/org/fs.git", "denied network"),
        ("https://169.254.169.254/latest/meta-data", "denied network"),
        ("https://100.64.0.1/org/fs.git", "denied network"),
        ("https://[::1]/org/fs.git", "denied network"),
        ("https://[::ffff:127.0.0.1]/org/fs.git", "denied network"),
        ("https://[fe80::1]/org/fs.git", "denied network"),
        ("https://[fd00::1]/org/fs.git", "denied network"),
        ("https://0.0.0.0/org/fs.git", "denied network"),
        ("https://224.0.0.1/org/fs.git", "not a public address"),
        ("https://localhost/org/fs.git", "not allowed"),
        ("https://LOCALHOST./org/fs.git", "not allowed"),
        ("https://repo.localhost/org/fs.git", "not allowed"),
        ("https://git.corp.internal/org/fs.git", "not allowed"),
        ("git@127.0.0.1:org/fs.git", "denied network"),
        ("git@localhost:org/fs.git", "not allowed"),
        ("git@-oProxyCommand=x:org/fs.git", "start with '-'"),
        ("ssh://-oProxyCommand=x/org/fs.git", "start with '-'"),
        ("ssh://-user@github.com/org/fs.git", "start with '-'"),
        ("git@github.com:-upload-pack", "start with '-'"),
        ("git@github.com:", "start with '-'"),
        ("https://github.com", "names no repository"),
        ("https://github.com/", "names no repository"),
        ("https://github.com/org/fs.git\n", "control"),
        ("https://github.com/org/\x00fs", "control"),
        ("https://github.com/org/fs .git", "whitespace"),
        ("https://bad_host!/x", "valid host"),
        ("https://github.com:99999/x", "valid URL"),
        ("", "1-2048"),
        ("https://github.com/" + "a" * 2048, "1-2048"),
        ("just-a-word", "not a git URL"),
    ],
)
def test_unsafe_git_urls_are_refused(url: str, why: str) -> None:
    with pytest.raises(InvalidInputError, match="git_url") as e:
        rules.check_git_url(url, PROD)
    assert why in str(e.value)


@pytest.mark.parametrize(
    "url",
    [
        "/srv/repos/fs",
        "http://127.0.0.1:9000/fs.git",
        "https://localhost/fs.git",
        "git@127.0.0.1:fs.git",
        "ssh://git@10.0.0.2/fs.git",
        "git://127.0.0.1/fs.git",
    ],
)
def test_local_sources_are_accepted_only_when_allowed(url: str) -> None:
    assert rules.check_git_url(url, LOCAL) == url
    with pytest.raises(InvalidInputError):
        rules.check_git_url(url, PROD)


@pytest.mark.parametrize(
    "url", ["file:///srv/repo", "ext::sh", "./relative", "-oProxyCommand=x", "https://u:p@localhost/x"]
)
def test_local_mode_still_refuses_the_dangerous_forms(url: str) -> None:
    with pytest.raises(InvalidInputError):
        rules.check_git_url(url, LOCAL)


@pytest.mark.parametrize("path", [".", "features", "features/fs-1", "configs/default.toml", "a/b.c/d"])
def test_relative_paths_inside_the_repo_are_accepted(path: str) -> None:
    assert rules.check_relative_path(path, "feature_set_path") == path


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("..", "'..'"),
        ("../other", "'..'"),
        ("a/../../b", "'..'"),
        ("/etc/passwd", "relative"),
        ("~root/x", "relative"),
        ("C:/x", "relative"),
        ("a\\b", "separator"),
        ("a\x01b", "control"),
        ("a\nb", "control"),
        ("-rf", "'-'"),
        ("", "1-256"),
        ("x" * 257, "1-256"),
    ],
)
def test_paths_that_leave_the_repo_are_refused(path: str, why: str) -> None:
    with pytest.raises(InvalidInputError, match="config_file") as e:
        rules.check_relative_path(path, "config_file")
    assert why in str(e.value)


@pytest.mark.parametrize("ref", ["main", "v1.2.3", "feature/new-model", "0123456789abcdef" * 2, "release_2026"])
def test_git_refs_are_accepted(ref: str) -> None:
    assert rules.check_git_ref(ref, "git_ref") == ref


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "x" * 201,
        "-x",
        "--output=/tmp/x",
        "/main",
        "main/",
        "main.",
        "x.lock",
        ".hidden",
        "a..b",
        "a b",
        "a~1",
        "a^2",
        "a:b",
        "a?",
        "a*",
        "a[1",
        "a\\b",
        "@{-1}x",
        "a//b",
        "a\x7f",
        "a\tb",
    ],
)
def test_bad_git_refs_are_refused(ref: str) -> None:
    with pytest.raises(InvalidInputError, match="trainer_ref"):
        rules.check_git_ref(ref, "trainer_ref")


def test_intervals_are_1_to_64_unique_positive_minutes() -> None:
    assert rules.check_intervals([60]) == (60,)
    assert rules.check_intervals(list(range(1, 65))) == tuple(range(1, 65))
    for bad in ([], [0], [-5], [60, 60], list(range(1, 66)), [True], [2_000_000]):
        with pytest.raises(InvalidInputError, match="prediction_intervals"):
            rules.check_intervals(bad)


def test_passthrough_args_one_string_is_split_shell_style_and_never_run() -> None:
    split = rules.split_args("--config_override model.depth=3 --note 'two words' $(rm -rf /)")
    assert split == ("--config_override", "model.depth=3", "--note", "two words", "$(rm", "-rf", "/)")
    assert rules.split_args(["--a", "b c; rm -rf /"]) == ("--a", "b c; rm -rf /")
    assert rules.split_args(None) == ()
    assert rules.split_args("") == ()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (["x"] * 65, "at most 64"),
        (["x" * 4097], "4096 bytes"),
        (["é" * 2049], "4096 bytes"),
        (["a\x00b"], "NUL"),
        ("a\x00b", "NUL"),
        ("--note 'unbalanced", "split"),
    ],
)
def test_passthrough_args_limits(value: object, why: str) -> None:
    with pytest.raises(InvalidInputError, match="passthrough_args") as e:
        rules.split_args(value)  # type: ignore[arg-type]
    assert why in str(e.value)


def test_gpu_type_and_names() -> None:
    assert rules.check_gpu_type("NVIDIA GeForce RTX 4090") == "NVIDIA GeForce RTX 4090"
    assert rules.check_gpu_type(None) is None
    for bad in ("", "x;rm -rf /", "a\nb", "x" * 81):
        with pytest.raises(InvalidInputError, match="gpu_type"):
            rules.check_gpu_type(bad)
    assert rules.name_from_url("git@github.com:org/my-fs.git") == "my-fs"
    assert rules.name_from_url("https://github.com/org/fs/") == "fs"
    with pytest.raises(InvalidInputError, match="name"):
        rules.check_name("bad\x07name")
