"""Schemathesis 4 against ``/schema/openapi.json``, run as a new user would run it:
``st run URL -H "Authorization: Bearer ..." -c all -n 25``, every check it has and no
exclusions, as a user and as an admin, over real HTTP. The streams are included: the API under
test ends every SSE stream after ``sse_max_s``, as it does in production (clients reconnect)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest

ADMIN_SECRET = "tst_bootstrap-admin-for-tests"  # as the api fixture has it
ST = shutil.which("st") or str(Path(sys.executable).with_name("st"))


async def schemathesis(url: str, token: str, workdir: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        ST, "run", f"{url}/schema/openapi.json",
        "-H", f"Authorization: Bearer {token}",
        "-c", "all", "-n", "25", "--seed", "17", "--request-timeout", "10", "--no-color",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=workdir,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=800)
    return proc.returncode or 0, out.decode(errors="replace")


@pytest.mark.timeout(900)  # about 1.5 min on a quiet 2-core machine; far more on a busy one
@pytest.mark.skipif(not Path(ST).exists(), reason="schemathesis (st) is not installed")
async def test_schemathesis_all_checks_as_user_and_as_admin(make_api, tmp_path) -> None:
    api = await make_api(sse_max_s=0.05, sse_keepalive_s=0.02)
    alice = api.alice.headers["authorization"].removeprefix("Bearer ")
    roles = {"user": alice, "admin": ADMIN_SECRET}
    runs = await asyncio.gather(*(schemathesis(api.url, token, tmp_path) for token in roles.values()))
    for role, (code, out) in zip(roles, runs, strict=True):
        (tmp_path / f"schemathesis-{role}.txt").write_text(out)
        assert code == 0, f"schemathesis as {role}:\n{out[-12000:]}"
