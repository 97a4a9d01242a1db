"""The multi-machine install, checked without a cluster: every manifest parses and holds together.

No kubectl, docker or GPU here: these tests read the YAML (``infra/k8s``, ``infra/compose``) and check
what a reviewer would (kinds, references, pinned images, the GPU request), not that a cluster runs it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

INFRA = Path(__file__).resolve().parents[1] / "infra"
K8S, COMPOSE = INFRA / "k8s", INFRA / "compose"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.fixture(scope="module")
def k8s() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml" for doc in _docs(path)]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    (doc,) = _docs(COMPOSE / "compose.yaml")
    return doc


def _named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def _containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for where, spec in _pod_specs(docs):
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield f"{where}/{container['name']}", container


def _pinned(image: str) -> bool:
    """``name:tag`` (or a digest) with a tag that is not ``latest``."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and bool(tag) and tag != "latest"


def test_every_file_parses_and_kustomization_lists_them_all(k8s: list[dict[str, Any]]) -> None:
    for path in [*K8S.glob("*.yaml"), *COMPOSE.glob("*.yaml")]:
        assert _docs(path), path
    kustomization = _docs(K8S / "kustomization.yaml")[0]
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert all(doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name") for doc in k8s)


def test_required_kinds_are_present(k8s: list[dict[str, Any]]) -> None:
    _named(k8s, "Namespace", "modelgate")
    _named(k8s, "StatefulSet", "postgres")
    for name in ("postgres", "prefect-server", "seaweedfs"):
        _named(k8s, "Service", name)
    for name in ("prefect-server", "seaweedfs", "worker-default", "worker-gpu"):
        _named(k8s, "Deployment", name)
    _named(k8s, "PersistentVolumeClaim", "seaweedfs-data")
    _named(k8s, "Job", "modelgate-setup")
    _named(k8s, "Secret", "postgres")


def test_prefect_server_runs_on_postgres_with_triggers(k8s: list[dict[str, Any]]) -> None:
    (container,) = _named(k8s, "Deployment", "prefect-server")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    ref = env["PREFECT_API_DATABASE_CONNECTION_URL"]["valueFrom"]["secretKeyRef"]
    url = _named(k8s, "Secret", ref["name"])["stringData"][ref["key"]]
    assert url.startswith("postgresql+asyncpg://") and "@postgres:5432/" in url
    assert env["PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED"]["value"] == "true"


def test_gpu_worker_requests_a_gpu_and_the_default_worker_does_not(k8s: list[dict[str, Any]]) -> None:
    def worker(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        spec = _named(k8s, "Deployment", name)["spec"]["template"]["spec"]
        return spec, spec["containers"][0]

    spec, gpu = worker("worker-gpu")
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert gpu["command"][gpu["command"].index("--pool") + 1] == "gpu"
    spec, default = worker("worker-default")
    assert "nvidia.com/gpu" not in str(default["resources"]) and "tolerations" not in spec
    assert default["command"][default["command"].index("--pool") + 1] == "default"
    assert all(c["command"][c["command"].index("--type") + 1] == "process" for c in (gpu, default))


def test_every_image_is_pinned_by_tag(k8s: list[dict[str, Any]], compose: dict[str, Any]) -> None:
    images = {where: c["image"] for where, c in _containers(k8s)}
    images |= {f"compose/{name}": s["image"] for name, s in compose["services"].items()}
    assert len(images) >= 10
    assert not [f"{where}: {image}" for where, image in images.items() if not _pinned(image)]
    kustomization = _docs(K8S / "kustomization.yaml")[0]
    assert all(i["newTag"] not in ("", "latest") for i in kustomization["images"])
    (base,) = re.findall(r"^FROM\s+(\S+)", (COMPOSE / "Dockerfile").read_text(), flags=re.M)
    assert _pinned(base), base
    assert not _pinned("postgres") and not _pinned("postgres:latest") and not _pinned("host:5000/postgres")


def test_references_resolve(k8s: list[dict[str, Any]]) -> None:
    secrets = {d["metadata"]["name"]: d.get("stringData", {}) | d.get("data", {}) for d in k8s if d["kind"] == "Secret"}
    claims = {d["metadata"]["name"] for d in k8s if d["kind"] == "PersistentVolumeClaim"}
    problems = []
    for where, spec in _pod_specs(k8s):
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume and volume["persistentVolumeClaim"]["claimName"] not in claims:
                problems.append(f"{where}: claim {volume['persistentVolumeClaim']['claimName']}")
            if "secret" in volume and volume["secret"]["secretName"] not in secrets:
                problems.append(f"{where}: secret {volume['secret']['secretName']}")
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if source["secretRef"]["name"] not in secrets:
                    problems.append(f"{where}: envFrom {source['secretRef']['name']}")
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["key"] not in secrets.get(ref["name"], {}):
                    problems.append(f"{where}: {ref['name']}/{ref['key']}")
    workloads = [d for d in k8s if d["kind"] in ("Deployment", "StatefulSet")]
    pods = [doc["spec"]["template"]["metadata"]["labels"] for doc in workloads]
    for service in (d for d in k8s if d["kind"] == "Service"):
        selector = service["spec"]["selector"]
        if not any(selector.items() <= labels.items() for labels in pods):
            problems.append(f"Service/{service['metadata']['name']} selects no pod")
    assert not problems


def test_setup_creates_both_pools_the_gpu_limits_and_the_automations(
    k8s: list[dict[str, Any]], compose: dict[str, Any]
) -> None:
    job = _named(k8s, "Job", "modelgate-setup")["spec"]["template"]["spec"]["containers"][0]
    for script in (" ".join(job["command"] + job["args"]), " ".join(compose["services"]["setup"]["command"])):
        for step in (
            "work-pool create default --type process --overwrite",
            "work-pool create gpu --type process --overwrite",
            "work-pool set-concurrency-limit gpu",
            "concurrency-limit create gpu",
            "modelgate automations apply",
        ):
            assert step in script, step


def test_compose_runs_everything_on_one_machine_with_a_gpu_worker(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "prefect-server", "seaweedfs", "setup", "worker-default", "worker-gpu"} <= set(services)
    env = services["prefect-server"]["environment"]
    assert env["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    (device,) = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "deploy" not in services["worker-default"]
    for name in ("worker-default", "worker-gpu"):  # merged from the x-worker anchor
        assert services[name]["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        assert services[name]["depends_on"]["setup"]["condition"] == "service_completed_successfully"
