"""Bad input and unreachable services: the study config under property-based fuzzing, and the
sweep failing fast, in one line, when MLflow or its storage cannot be reached, with no secret
in what it prints."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cluster.tracking_stack import executable, free_port, start, stop, wait_until_up
from sweeps.config import ConfigError, StudyConfig, config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "sweeps" / "configs" / "smoke.yaml"
SECRET = "wJalrXUtnFEMI-planted-secret"


def _key_paths(cls, prefix: str = "") -> list[str]:
    paths = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        name = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(hints[field.name]):
            paths += _key_paths(hints[field.name], f"{name}.")
        else:
            paths.append(name)
    return paths


KEYS = _key_paths(StudyConfig)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=2)
    ),
    max_leaves=6,
)
key_paths = st.one_of(
    st.sampled_from(KEYS),
    st.builds(
        lambda k, extra: f"{k}.{extra}", st.sampled_from(KEYS), st.text("abcxyz_", min_size=1)
    ),
    st.text("abcdefghijklmnopqrstuvwxyz_.", min_size=1, max_size=20),
)


def _one_line_naming(err: ConfigError, keys: list[str]) -> None:
    """One line that names one of the overridden keys (or its section), or the override."""
    message = str(err)
    assert message and "\n" not in message, message
    named = any(key.split(".")[0] in message for key in keys)
    assert named or "override" in message, (keys, message)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=st.lists(st.tuples(key_paths, values), min_size=1, max_size=3))
def test_fuzzed_overrides_load_or_fail_in_one_line(overrides):
    items = [
        f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"
        for key, value in overrides
    ]
    items = [item.removesuffix("\n...").removesuffix(" ...") for item in items]
    try:
        config = load_config(SMOKE, items)
    except ConfigError as err:
        _one_line_naming(err, [key for key, _ in overrides])
        return
    # what loads also survives the trip through plain values (what Ray trials receive)
    assert config_from_dict(config.to_dict()) == config


@settings(max_examples=150, deadline=None)
@given(document=st.one_of(st.text(max_size=200), values.map(yaml.safe_dump)))
@example(document="? '\n\n'")  # a key of line breaks (found by this test)
@example(document="1: 2\nb: 3\n")  # keys of two types, which do not sort together
@example(document="grid: {null: 1}\n")
def test_fuzzed_config_files_load_or_fail_in_one_line(tmp_path_factory, document):
    path = tmp_path_factory.mktemp("fuzz") / "study.yaml"
    path.write_text(document, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as err:
        assert str(err) and "\n" not in str(err), str(err)


def run_sweep(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, str(ROOT / "sweeps" / "scale_vs_robustness.py"), *args]
    started = time.monotonic()
    result = subprocess.run(
        command, capture_output=True, text=True, env=full_env, timeout=300, check=False
    )
    return result, time.monotonic() - started


@pytest.mark.heavy
def test_unreachable_tracking_server_fails_fast_naming_it(tmp_path):
    uri = f"http://mlflow-user:{SECRET}@127.0.0.1:{free_port()}"
    result, seconds = run_sweep(
        "--config", str(SMOKE), f"workdir={tmp_path}", "--tracking-uri", uri
    )
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: MLflow tracking server http://mlflow-user:***@127.0.0.1:")
    assert "unreachable" in error and "Traceback" not in result.stderr
    assert SECRET not in result.stdout + result.stderr
    # the 15 s budget is for the check itself; the rest is starting Python and importing
    assert seconds < 15 + 20, seconds
    assert not (tmp_path / "data").exists()  # nothing started before the check


@pytest.mark.heavy
def test_unreachable_storage_names_endpoint_and_bucket_without_secrets(tmp_path):
    endpoint = f"127.0.0.1:{free_port()}"
    storage = f"s3://moclip-results/ray?endpoint_override={endpoint}&scheme=http"
    env = {"AWS_ACCESS_KEY_ID": "AKIAPLANTED", "AWS_SECRET_ACCESS_KEY": SECRET}
    result, _ = run_sweep(
        "--config", str(SMOKE), f"workdir={tmp_path}", f"ray.storage_path={storage}", env=env
    )
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    assert "'moclip-results'" in error and f"http://{endpoint}" in error
    assert "cannot connect" in error and "Traceback" not in result.stderr
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.heavy
def test_refused_credentials_name_endpoint_and_bucket_without_secrets(tmp_path):
    # moto checks signatures against its own IAM users when told to authorise every request
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    server = start(
        [executable("moto_server"), "-H", "127.0.0.1", "-p", str(port)], tmp_path / "s3.log", env
    )
    try:
        wait_until_up(f"{endpoint}/moto-api/", server, "moto S3 server", tmp_path / "s3.log")
        storage = f"s3://moclip-results/ray?endpoint_override=127.0.0.1:{port}&scheme=http"
        keys = {"AWS_ACCESS_KEY_ID": "AKIAWRONGKEY0000", "AWS_SECRET_ACCESS_KEY": SECRET}
        result, seconds = run_sweep(
            "--config", str(SMOKE), f"workdir={tmp_path}", f"ray.storage_path={storage}", env=keys
        )
    finally:
        stop(server)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    error = result.stderr.strip().splitlines()[-1]
    assert "'moclip-results'" in error and endpoint in error
    assert "wrong credentials" in error and "Traceback" not in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert seconds < 60, seconds
