"""Cluster and storage: the cluster launcher configs against Ray's own schema, and the tracking
stack for real: cluster/tracking_stack.py starts an S3-speaking server (moto) on loopback and a
real `mlflow server` whose artifacts live in it; the smoke sweep runs against them with Ray's
storage on s3:// at the same endpoint; the runs are read back through the server's REST API,
the files from the bucket, and the experiment from the MLflow UI in headless Chromium."""

from __future__ import annotations

import copy
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from sweeps.storage import S3Location

# real Ray, MLflow or several processes: left out of the fast lane (dev.py test --fast)
pytestmark = pytest.mark.heavy

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "cluster" / "tracking_stack.py"
SMOKE = ROOT / "sweeps" / "configs" / "smoke.yaml"
STACK_START_S = 240


@pytest.mark.parametrize("path", ["ray_cluster.yaml", "cluster/local.yaml"])
def test_cluster_configs_pass_rays_schema(path):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / path).read_text())
    validate_config(prepare_config(copy.deepcopy(config)))
    # the check is not vacuous: a misspelt key fails it
    broken = copy.deepcopy(config)
    broken["file_mount"] = broken.pop("file_mounts")
    with pytest.raises(Exception, match="file_mount"):
        validate_config(prepare_config(broken))


@pytest.mark.parametrize("path", ["ray_cluster.yaml", "cluster/local.yaml"])
def test_cluster_nodes_get_the_wordnet_the_shipped_configs_use(path):
    """The HumanML3D config attacks with WordNet synonyms; the nodes read WordNet offline from
    the Debian packages `dev.py` installs on a development machine."""
    import importlib.util

    from sweeps.config import load_config

    assert "wordnet-synonym" in load_config(ROOT / "sweeps/configs/humanml3d.yaml").attacks.recipes
    spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
    dev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dev)
    packages, marker = dev.APT_PACKAGES["WordNet 3.0"]
    setup = yaml.safe_load((ROOT / path).read_text())["setup_commands"]
    installs = [command for command in setup if "apt-get install" in command]
    assert installs and all(package in installs[0] for package in packages)
    assert str(marker) in installs[0]  # skipped where the packages are already there


def test_aws_cluster_uses_an_instance_profile_and_no_open_ports():
    config = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    for node in config["available_node_types"].values():
        assert node["node_config"]["IamInstanceProfile"]["Name"]
    text = (ROOT / "ray_cluster.yaml").read_text()
    assert "AWS_SECRET_ACCESS_KEY" not in text and "aws_secret" not in text.lower()
    assert "--dashboard-host=127.0.0.1" in text
    assert "security_group" not in text.lower()  # Ray's default group opens only SSH


@pytest.mark.parametrize("path", ["ray_cluster.yaml", "cluster/local.yaml"])
def test_cluster_nodes_share_one_ray_token_and_start_ray_with_authentication_on(path, tmp_path):
    """A head that finds ~/.ray/auth_token (any local ray.init() on it writes one) turns Ray's
    token authentication on, and a worker without that token cannot join: every node gets the
    token of the machine that runs `ray up`, and starts Ray with RAY_AUTH_MODE=token."""
    config = yaml.safe_load((ROOT / path).read_text())
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    (writes_env,) = [c for c in config["setup_commands"] if "> ~/.moclip_env" in c]
    subprocess.run(
        ["bash", "-c", writes_env], env={**os.environ, "HOME": str(tmp_path)}, check=True
    )
    assert _exports(tmp_path / ".moclip_env")["RAY_AUTH_MODE"] == "token"
    starts = [*config["head_start_ray_commands"], *config["worker_start_ray_commands"]]
    starts = [command for command in starts if "ray start" in command]
    assert len(starts) == 2 and all(c.startswith("source ~/.moclip_env &&") for c in starts)


def _exports(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        values[name] = shlex.split(value)[0]
    return values


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The tracking stack in one command, as a user starts it; its exports for the sweep."""
    from cluster.tracking_stack import free_port

    folder = tmp_path_factory.mktemp("stack")
    env_file = folder / "env.sh"
    port = free_port()
    command = [
        sys.executable,
        str(STACK),
        "--local-s3",
        "--storage",
        "s3://moclip-test/sweeps",
        "--port",
        str(port),
        "--state-dir",
        str(folder / "state"),
        "--env-file",
        str(env_file),
    ]
    log = (folder / "stack.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + STACK_START_S
    while not env_file.exists():
        assert process.poll() is None, (folder / "stack.log").read_text()
        assert time.monotonic() < deadline, "tracking stack did not start in time"
        time.sleep(0.5)
    exports = _exports(env_file)
    exports["S3_ENDPOINT"] = S3Location.parse(exports["MOCLIP_RAY_STORAGE"]).endpoint
    yield exports
    process.send_signal(signal.SIGTERM)
    process.wait(60)
    log.close()


def _bucket_keys(stack: dict) -> list[str]:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=stack["S3_ENDPOINT"],
        aws_access_key_id=stack["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stack["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    keys, token = [], None
    while True:
        page = client.list_objects_v2(
            Bucket="moclip-test", **({"ContinuationToken": token} if token else {})
        )
        keys += [item["Key"] for item in page.get("Contents", [])]
        token = page.get("NextContinuationToken")
        if not token:
            return keys


def _stack_error(stack: dict, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIATESTKEY",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t-v4lue",
    }
    return subprocess.run(
        [sys.executable, str(STACK), *args, "--port", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_stack_names_a_missing_bucket_and_a_dead_endpoint(stack, tmp_path):
    from cluster.tracking_stack import free_port

    state = ("--state-dir", str(tmp_path))
    missing = _stack_error(
        stack, "--s3-endpoint", stack["S3_ENDPOINT"], "--storage", "s3://no-such-bucket", *state
    )
    assert missing.returncode == 2
    assert "no-such-bucket" in missing.stderr and stack["S3_ENDPOINT"] in missing.stderr
    assert "does not exist" in missing.stderr

    dead = f"http://127.0.0.1:{free_port()}"
    down = _stack_error(stack, "--s3-endpoint", dead, "--storage", "s3://moclip-test", *state)
    assert down.returncode == 2 and dead in down.stderr and "cannot connect" in down.stderr
    for result in (missing, down):
        assert "s3cr3t-v4lue" not in result.stderr + result.stdout


@pytest.fixture(scope="module")
def swept(stack, tmp_path_factory):
    """The smoke sweep against the stack: MLflow server, S3 artifacts, Ray storage on s3://."""
    workdir = tmp_path_factory.mktemp("sweep")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.update({k: v for k, v in stack.items() if k != "S3_ENDPOINT"})
    command = [sys.executable, str(ROOT / "sweeps" / "scale_vs_robustness.py")]
    command += ["--config", str(SMOKE), f"workdir={workdir}"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _rest(uri: str, endpoint: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/{endpoint}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_sweep_runs_read_back_through_the_rest_api(stack, swept):
    uri = stack["MLFLOW_TRACKING_URI"]
    assert f"Ray storage {stack['MOCLIP_RAY_STORAGE']}" in swept.stdout
    experiment = _rest(uri, "experiments/get-by-name?experiment_name=smoke")["experiment"]
    runs = _rest(uri, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    kinds: dict[str, list] = {}
    for run in runs:
        tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
        kinds.setdefault(tags.get("kind"), []).append((run, tags))
    assert (len(kinds["sweep"]), len(kinds["finetune"]), len(kinds["evaluation"])) == (1, 3, 6)
    for run, tags in kinds["evaluation"]:
        metrics = {m["key"]: m for m in run["data"]["metrics"]}
        assert metrics["fid"]["value"] > 0 and tags["condition"] in ("clean", "char-swap b1")
    parent = kinds["sweep"][0][0]
    assert parent["info"]["artifact_uri"].startswith("mlflow-artifacts:")


def test_checkpoints_and_plots_land_in_the_bucket(stack, swept):
    keys = _bucket_keys(stack)
    mlflow_keys = [k for k in keys if k.startswith("sweeps/mlflow/")]
    ray_keys = [k for k in keys if k.startswith("sweeps/ray/")]
    # fine-tuned checkpoints as MLflow artifacts, and Ray Train's own checkpoints
    assert sum(k.endswith("/checkpoint/moclip.pt") for k in mlflow_keys) == 2
    assert sum(k.endswith("/moclip.pt") and "checkpoint_" in k for k in ray_keys) >= 2
    for plot in ("fid_vs_pairs.png", "delta_fid_heatmap.png", "delta_fid_trend.png"):
        assert any(k.endswith(f"/report/{plot}") for k in mlflow_keys), plot
    assert any(k.endswith("/report/summary.html") for k in mlflow_keys)
    for model in ("evaluator", "generator"):
        assert any(f"/stage0/{model}-" in k for k in mlflow_keys), model


def test_mlflow_ui_lists_the_experiment_and_its_runs(stack, swept):
    from dashboards.mlflow_ui import chromium, page_text, runs_url

    uri = stack["MLFLOW_TRACKING_URI"]
    experiment = _rest(uri, "experiments/get-by-name?experiment_name=smoke")["experiment"]
    with chromium() as driver:
        listing = page_text(driver, f"{uri}/#/experiments", "smoke")
        assert "smoke" in listing
        runs = page_text(driver, runs_url(uri, experiment["experiment_id"]), "sweep smoke")
        assert "10 matching runs" in runs
