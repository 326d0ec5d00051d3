"""The cluster definitions in cluster/ parse, and the launcher YAML passes Ray's own schema."""
from __future__ import annotations

from pathlib import Path
import os

import yaml

CLUSTER = Path(__file__).resolve().parent.parent / "cluster"


def test_aws_launcher_config_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "aws" / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # what `ray up` runs first: raises on an unknown or mistyped field
    assert config["head_node_type"] in config["available_node_types"]
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])
    assert any("pip install -q -e ." in c for c in config["setup_commands"])
    # object storage and one Ray token for every node (README: what a real cluster needs)
    assert "--artifacts-destination s3://" in " ".join(config["head_start_ray_commands"])
    assert all("IamInstanceProfile" in t["node_config"] for t in config["available_node_types"].values())
    assert "/home/ubuntu/.ray/auth_token" in config["file_mounts"]
    assert all("RAY_AUTH_MODE=token" in c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"] if "ray start" in c)


def test_kuberay_manifests_parse_and_share_checkpoint_storage():
    kinds = {}
    for path in (CLUSTER / "kuberay").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            kinds.setdefault(doc["kind"], []).append(doc)
    assert {"RayCluster", "RayJob", "PersistentVolumeClaim", "Deployment", "Service"} <= set(kinds)
    (claim,) = kinds["PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    cluster = kinds["RayCluster"][0]["spec"]
    pods = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    for pod in pods:
        assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    job = kinds["RayJob"][0]["spec"]
    assert "pipelines.cli train" in job["entrypoint"] and "trainer.storage_path=s3://" in job["entrypoint"]
    job_pods = [job["rayClusterSpec"]["headGroupSpec"]["template"]] + [g["template"] for g in job["rayClusterSpec"]["workerGroupSpecs"]]
    for pod in job_pods:  # S3 credentials and the Ray token from secrets, on every node
        secrets = {ref["secretRef"]["name"] for ref in pod["spec"]["containers"][0]["envFrom"]}
        assert secrets == {"raysitter-s3", "raysitter-ray-token"}
    server = kinds["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
    assert "--artifacts-destination" in server["command"] and server["envFrom"][0]["secretRef"]["name"] == "raysitter-s3"


def test_local_cluster_scripts_are_executable():
    for name in ("start.sh", "stop.sh"):
        assert os.access(CLUSTER / "local" / name, os.X_OK)
