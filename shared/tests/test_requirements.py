"""The rules a feature set's requirements.txt must follow before either platform installs it."""

from __future__ import annotations

import pytest
from touchstone.shared.requirements import BadRequirements, plain_requirements, unreachable_index


def test_plain_requirement_lines_are_kept_and_comments_dropped():
    text = "# helpers\n\ntsdemo-helper==1.0  # pinned\nnumpy>=1.26,<3 ; python_version >= '3.10'\npandas[perf]\n"

    assert plain_requirements(text) == [
        "tsdemo-helper==1.0", "numpy>=1.26,<3 ; python_version >= '3.10'", "pandas[perf]"]


@pytest.mark.parametrize("line", [
    "-r other.txt", "--index-url https://evil.example/simple", "-e .", "--no-binary :all:", "./local-package",
    "git+https://github.com/x/y", "pkg @ https://x.example/pkg.whl", "numpy \\", "pkg; os.system('x') @ y",
    "numpy==1.0 --hash=sha256:abc", "$(touch /tmp/x)",
])
def test_anything_but_a_plain_requirement_is_refused_naming_the_line(line):
    with pytest.raises(BadRequirements, match="line 2"):
        plain_requirements(f"numpy\n{line}\n")


def test_a_file_that_is_not_utf8_is_refused():
    with pytest.raises(BadRequirements, match="UTF-8"):
        plain_requirements(b"numpy\n\xff\xfe\n")


def test_only_an_unreachable_index_counts_as_worth_retrying():
    assert unreachable_index(["WARNING: Retrying ... NewConnectionError('<...>: Failed to establish')"])
    assert not unreachable_index(["ERROR: No matching distribution found for no-such-package==9"])


def test_the_file_must_be_a_small_regular_file_of_the_checkout(tmp_path):
    from touchstone.shared.requirements import MAX_BYTES, read_file

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    good = checkout / "requirements.txt"
    good.write_text("numpy\n")
    assert read_file(good, checkout) == b"numpy\n"
    outside = tmp_path / "secret"
    outside.write_text("x\n")
    link = checkout / "linked.txt"
    link.symlink_to(outside)
    big = checkout / "big.txt"
    big.write_bytes(b"#" * (MAX_BYTES + 1))
    for bad, why in ((link, "regular file"), (big, "larger than")):
        with pytest.raises(BadRequirements, match=why):
            read_file(bad, checkout)
