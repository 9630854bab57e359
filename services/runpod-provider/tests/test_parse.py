"""The vendor edge without I/O: RunPod JSON in, our models or our errors out."""

from __future__ import annotations

import pytest
from touchstone.runpod_provider.api import BadResponseError, PodStatus, parse
from touchstone.runpod_provider.api.errors import classify
from touchstone.shared.errors import InvalidInputError, NoCapacityError, UnavailableError

RUNNING = {
    "id": "7h9k2m4n6p",
    "name": "touchstone-s1-t1-1",
    "status": "RUNNING",
    "actions": ["stop", "restart", "terminate"],
    "image": "img",
    "env": {"PUBLIC_KEY": "ssh-ed25519 AAAA", "TOKEN": "s3cret"},
    "gpu": {"id": "NVIDIA GeForce RTX 4090", "count": 2},
    "cost": 0.88,
    "ssh": {"proxy": None, "direct": None},
    "runtime": {"ports": [{"private": 22, "public": 40112, "type": "tcp", "ip": "195.26.233.3"}]},
    "createdAt": "2026-06-01T12:00:00Z",
    "startedAt": None,
}


def test_ssh_falls_back_to_the_runtime_port_of_22():
    pod = parse.pod(RUNNING)

    assert pod.ssh is not None and (pod.ssh.host, pod.ssh.port) == ("195.26.233.3", 40112)
    assert pod.gpu_count == 2 and pod.created_at is not None and pod.created_at.year == 2026


def test_an_unknown_status_is_unknown_not_an_error():
    assert parse.pod({**RUNNING, "status": "HIBERNATING"}).status is PodStatus.UNKNOWN


def test_a_malformed_pod_names_the_field_and_never_echoes_values():
    with pytest.raises(BadResponseError) as missing:
        parse.pod({k: v for k, v in RUNNING.items() if k != "id"})
    with pytest.raises(BadResponseError) as wrong_type:
        parse.pod({**RUNNING, "cost": "not a number"})

    assert "'id'" in str(missing.value)
    assert "s3cret" not in str(missing.value) + str(wrong_type.value)


def test_the_list_must_be_wrapped():
    with pytest.raises(BadResponseError):
        parse.pods([RUNNING])


def test_rate_limit_headers_parse_as_in_the_reference():
    value = '"minute";r=0;t=12, "hour";r=2800;t=1812, "day";r=49500;t=45012'

    assert parse.ratelimit(value)["minute"] == {"r": 0, "t": 12}
    assert parse.ratelimit(value)["day"] == {"r": 49500, "t": 45012}


@pytest.mark.parametrize(
    ("status", "detail", "expected"),
    [
        (400, "There are no longer any instances available with the requested specs.", NoCapacityError),
        (400, "exactly one of gpu or cpu must be set", InvalidInputError),
        (422, "Request validation failed.", InvalidInputError),
        (503, "", UnavailableError),
        (200, "Something went wrong. Please try again later or contact support.", UnavailableError),
    ],
)
def test_classify_by_status_then_detail(status, detail, expected):
    assert type(classify(status, detail)) is expected
