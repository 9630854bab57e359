"""The bench's baseline: Litestar doing nothing but answer one submission-sized JSON document,
served exactly as the API is (uvicorn, one worker, uvloop, same interpreter).

    python services/submission/bench/trivial_app.py PORT
"""

from __future__ import annotations

import sys

import uvicorn
import uvloop
from litestar import Litestar, get

DOC = {
    "id": "s-000000000007",
    "owner": "user-7",
    "name": "feature set 7",
    "git_url": "https://github.com/org/fs-7.git",
    "git_ref": "main",
    "feature_set_path": ".",
    "commit": None,
    "status": "ACCEPTED",
    "created_at": "2026-01-01T00:00:07Z",
    "updated_at": "2026-01-01T00:00:07Z",
    "validation_report": None,
    "schedule": None,
    "error": None,
    "cancel_requested": False,
    "tasks_total": 0,
    "tasks_done": 0,
    "cost_usd": 0.0,
    "seq": 1,
    "tasks": [],
}


@get("/submission")
async def submission() -> dict[str, object]:
    return DOC


def main() -> None:
    config = uvicorn.Config(
        Litestar([submission], logging_config=None),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_config=None,
        lifespan="on",
        proxy_headers=False,
        server_header=False,
    )
    uvloop.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
