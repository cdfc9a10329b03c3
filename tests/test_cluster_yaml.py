"""cluster.yaml passes the Ray cluster launcher's own schema and opens no port but SSH."""

from __future__ import annotations

from pathlib import Path

import yaml

CLUSTER = Path(__file__).resolve().parent.parent / "cluster.yaml"


def test_cluster_yaml_validates_with_rays_schema() -> None:
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    config = yaml.safe_load(CLUSTER.read_text())
    validate_config(fillout_defaults(config))  # raises on any schema problem
    gpu = config["available_node_types"]["gpu_worker"]
    assert gpu["resources"]["GPU"] >= 1 and gpu["min_workers"] == 0 and gpu["max_workers"] >= 1
    assert any("pip install" in c and ".[weights]" in c for c in config["setup_commands"])


def test_only_ssh_is_open_and_the_dashboard_is_local() -> None:
    config = yaml.safe_load(CLUSTER.read_text())
    rules = config["provider"]["security_group"]["IpPermissions"]
    assert [(r["FromPort"], r["ToPort"]) for r in rules] == [(22, 22)]
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
