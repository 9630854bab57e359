"""Each RunPod failure maps to one error of our tree; retries honour Retry-After; the key
never leaks into logs or exception text."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from touchstone.runpod_local import Injection
from touchstone.runpod_provider.api import (
    BadResponseError,
    CreateUncertainError,
    ForbiddenError,
    PaymentRequiredError,
    RunpodApiClient,
    WrongApiError,
)
from touchstone.shared.errors import (
    AuthError,
    InvalidInputError,
    NoCapacityError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UnavailableError,
)

GPU = "NVIDIA GeForce RTX 4090"


def client(fake, key=None, **options) -> RunpodApiClient:
    options.setdefault("max_retries", 0)
    options.setdefault("timeout", 5)
    return RunpodApiClient(fake.base_url, key or fake.api_key, graphql_url=fake.graphql_url, **options)


async def test_a_bad_key_is_an_auth_error(fake, spec):
    async with client(fake, key="rpa_wrong") as api:
        with pytest.raises(AuthError, match="401"):
            await api.list_pods()
        with pytest.raises(AuthError):
            await api.get_balance()
        with pytest.raises(AuthError):
            await api.create_pod(spec())
    assert fake.ledger() == []


async def test_a_revoked_key_is_an_auth_error_even_for_terminate(api, fake, spec):
    pod = await api.create_pod(spec())
    fake.faults.revoked = True

    with pytest.raises(AuthError):
        await api.terminate_pod(pod.id)


async def test_low_balance_is_a_permanent_payment_error(api, fake, spec):
    fake.faults.balance = 0.10

    with pytest.raises(PaymentRequiredError, match="402") as caught:
        await api.create_pod(spec())
    assert isinstance(caught.value, PermanentError)
    assert (await api.get_balance()).balance == pytest.approx(0.10)
    assert fake.ledger() == []


async def test_no_capacity_is_retryable_and_makes_no_pod(api, fake, spec):
    fake.faults.no_capacity = {GPU}

    with pytest.raises(NoCapacityError) as caught:
        await api.create_pod(spec())
    assert isinstance(caught.value, RetryableError)
    assert fake.ledger() == []
    other = await api.create_pod(spec(gpu_type_id="NVIDIA RTX A6000"))
    assert other.gpu_type_id == "NVIDIA RTX A6000"


async def test_a_data_center_without_the_gpu_is_no_capacity(api, spec):
    with pytest.raises(NoCapacityError):
        await api.create_pod(spec(data_center_ids=("US-TX-3",)))


async def test_a_forbidden_pool_is_a_forbidden_auth_error(api, fake, spec):
    fake.faults.forbidden = {GPU}

    with pytest.raises(ForbiddenError, match="403"):
        await api.create_pod(spec())


async def test_an_unknown_gpu_type_is_invalid_input(api, spec):
    with pytest.raises(InvalidInputError, match="gpu type not found"):
        await api.create_pod(spec(gpu_type_id="NVIDIA Imaginary 9000"))


async def test_get_of_an_unknown_pod_is_none_but_actions_are_not_found(api):
    assert await api.get_pod("nope") is None
    with pytest.raises(NotFoundError):
        await api.stop_pod("nope")


async def test_429_is_retried_after_retry_after(fake):
    fake.inject(Injection(status=429, method="GET", path="/v2/pods", retry_after=1))
    async with client(fake, max_retries=2) as api:
        started = time.monotonic()
        assert await api.list_pods() == []
        assert time.monotonic() - started >= 1.0


async def test_429_without_retries_carries_retry_after(api, fake):
    fake.inject(Injection(status=429, method="GET", path="/v2/pods", retry_after=7))

    with pytest.raises(RateLimitedError) as caught:
        await api.list_pods()
    assert caught.value.retry_after == 7


async def test_429_longer_than_we_wait_is_raised_at_once(fake):
    fake.inject(Injection(status=429, path="/v2/pods", retry_after=3600))
    async with client(fake, max_retries=3, max_retry_after=5) as api:
        with pytest.raises(RateLimitedError):
            await api.list_pods()


async def test_429_on_create_is_retried_because_nothing_was_done(fake, spec):
    fake.inject(Injection(status=429, method="POST", path="/v2/pods", retry_after=0))
    async with client(fake, max_retries=1) as api:
        pod = await api.create_pod(spec())
    assert [r.id for r in fake.ledger()] == [pod.id]


async def test_the_quota_running_out_is_a_429_with_retry_after(fake):
    fake.rate_limiter.quotas = {"minute": (2, 60)}
    async with client(fake) as api:
        await api.list_pods()
        await api.list_pods()
        with pytest.raises(RateLimitedError) as caught:
            await api.list_pods()
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 60


async def test_500_on_create_that_made_the_pod_is_uncertain(api, fake, spec):
    fake.inject(Injection(status=500, method="POST", path="/v2/pods", apply_first=True))

    with pytest.raises(CreateUncertainError) as caught:
        await api.create_pod(spec())

    assert caught.value.pod_name == "touchstone-s1-t1-1"
    found = await api.list_pods(name_prefix=caught.value.pod_name)
    assert len(found) == 1 and [r.id for r in fake.ledger()] == [found[0].id]


async def test_create_is_never_retried_on_5xx(fake, spec):
    fake.inject(Injection(status=503, method="POST", path="/v2/pods", apply_first=True))
    async with client(fake, max_retries=3, backoff=0.01) as api:
        with pytest.raises(CreateUncertainError):
            await api.create_pod(spec())
    assert len(fake.ledger()) == 1


async def test_5xx_on_reads_is_retried_with_backoff(fake):
    fake.inject(Injection(status=502, method="GET", path="/v2/pods", body="html", times=2))
    async with client(fake, max_retries=2, backoff=0.01) as api:
        assert await api.list_pods() == []


async def test_5xx_when_retries_run_out_is_unavailable(api, fake):
    fake.inject(Injection(status=502, method="GET", path="/v2/catalog", body="html"))

    with pytest.raises(UnavailableError, match="502"):
        await api.list_gpu_types()


async def test_a_v1_error_envelope_means_the_wrong_api(api, fake):
    fake.inject(Injection(status=500, path="/v2/pods", body="v1", detail="get pods: boom"))

    with pytest.raises(WrongApiError, match="v1"):
        await api.list_pods()


async def test_200_with_an_error_body_is_mapped(api, fake):
    fake.inject(
        Injection(
            status=200,
            path="/graphql",
            body="graphql",
            detail="Something went wrong. Please try again later or contact support.",
        )
    )
    with pytest.raises(UnavailableError, match="Something went wrong"):
        await api.get_balance()

    fake.inject(Injection(status=200, path="/v2/pods", body="v1", detail="create pod: x"))
    with pytest.raises(WrongApiError):
        await api.list_pods()

    fake.inject(Injection(status=200, path="/v2/pods", body="html"))
    with pytest.raises(BadResponseError):
        await api.list_pods()


async def test_no_server_is_unavailable():
    async with RunpodApiClient("http://127.0.0.1:9/v2", "k", max_retries=0, timeout=2) as api:
        with pytest.raises(UnavailableError):
            await api.list_pods()


async def test_a_server_that_never_answers_times_out():
    writers: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with RunpodApiClient(f"http://127.0.0.1:{port}/v2", "k", max_retries=1, timeout=0.2, backoff=0.01) as api:
            started = time.monotonic()
            with pytest.raises(UnavailableError, match="Timeout"):
                await api.get_pod("abc")
            assert time.monotonic() - started < 3
    finally:
        server.close()
        for writer in writers:
            writer.close()
            await writer.wait_closed()
        await server.wait_closed()


async def test_the_api_key_never_appears_in_logs_or_errors(fake, spec, caplog):
    caplog.set_level(logging.DEBUG)
    key = fake.api_key
    texts: list[str] = []

    async def failure(call) -> None:
        with pytest.raises(Exception) as caught:  # any error will do
            await call
        texts.extend([str(caught.value), repr(caught.value)])

    async with client(fake, max_retries=1, backoff=0.01) as api:
        texts.append(repr(api))
        fake.inject(Injection(status=500, method="GET", detail=f"your key {key}", times=2))
        await failure(api.list_pods())
        assert "[api key]" in texts[-2]
        fake.inject(Injection(status=429, method="GET", retry_after=0, times=2))
        await failure(api.list_pods())
        fake.inject(Injection(status=500, method="POST", path="/v2/pods", apply_first=True))
        await failure(api.create_pod(spec()))
        fake.faults.balance = 0.0
        await failure(api.create_pod(spec()))
    async with client(fake, key=key + "x") as wrong:
        await failure(wrong.get_balance())
        await failure(wrong.list_pods())

    assert len(texts) == 13
    assert all(key not in text for text in texts)
    assert key not in caplog.text
    assert any("retry" in r.getMessage() for r in caplog.records), "the client logs retries"
