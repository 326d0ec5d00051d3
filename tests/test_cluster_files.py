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
    assert "pipelines.cli train" in kinds["RayJob"][0]["spec"]["entrypoint"]


def test_local_cluster_scripts_are_executable():
    for name in ("start.sh", "stop.sh"):
        assert os.access(CLUSTER / "local" / name, os.X_OK)
