"""The webhook adapter against a local HTTP receiver: both payload shapes and every answer."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from touchstone.results.config import ResultsSettings
from touchstone.results.domain import Notice
from touchstone.results.notify import WebhookNotifier
from touchstone.shared.errors import PermanentError, RateLimitedError, UnavailableError

NOTICE = Notice("s1", "REJECTED", "Submission momentum (s1) was rejected",
                ("owner: ana", "failed check no_look_ahead: row 10 changed"), "https://ts.example/submissions/s1")


async def test_slack_body(receiver: Any) -> None:
    await WebhookNotifier(receiver.url, "slack", timeout_s=5).send(NOTICE)
    (body,) = receiver.bodies()
    assert body["text"].startswith("*Submission momentum (s1) was rejected*")
    assert "failed check no_look_ahead: row 10 changed" in body["text"]


async def test_lark_body_and_its_ok_answer(receiver: Any) -> None:
    receiver.answer(200, {"code": 0, "msg": "success", "data": {}})
    await WebhookNotifier(receiver.url, "lark", timeout_s=5).send(NOTICE)
    (body,) = receiver.bodies()
    assert body["msg_type"] == "post"
    assert body["content"]["post"]["en_us"]["title"] == NOTICE.title


async def test_lark_error_in_a_200_is_an_error(receiver: Any) -> None:
    receiver.answer(200, {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"})
    with pytest.raises(PermanentError, match="19021"):
        await WebhookNotifier(receiver.url, "lark", timeout_s=5).send(NOTICE)
    receiver.answer(200, {"code": 11232, "msg": "frequency limited"})
    with pytest.raises(RateLimitedError):
        await WebhookNotifier(receiver.url, "lark", timeout_s=5).send(NOTICE)


@pytest.mark.parametrize(("status", "error"), [(500, UnavailableError), (503, UnavailableError),
                                               (429, RateLimitedError), (404, PermanentError),
                                               (400, PermanentError)])
async def test_http_answers_map_to_our_errors(receiver: Any, status: int, error: type[Exception]) -> None:
    receiver.answer(status, b"no")
    with pytest.raises(error):
        await WebhookNotifier(receiver.url, "slack", timeout_s=5).send(NOTICE)


async def test_unreachable_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UnavailableError):
        await WebhookNotifier(f"http://127.0.0.1:{port}/hook", "slack", timeout_s=2).send(NOTICE)


@pytest.mark.parametrize(("url", "kind"), [
    ("https://hooks.slack.com/services/T/B/X", "slack"),
    ("https://open.larksuite.com/open-apis/bot/v2/hook/abc", "lark"),
    ("https://open.feishu.cn/open-apis/bot/v2/hook/abc", "lark"),
])
def test_auto_kind(url: str, kind: str) -> None:
    assert ResultsSettings(webhook_url=url).resolved_webhook_kind() == kind
    assert ResultsSettings(webhook_url=url, webhook_kind="slack").resolved_webhook_kind() == "slack"
