import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_main_job_builds_once_then_reuses(tmp_path):
    cmd = [
        sys.executable,
        str(ROOT / "sweeps" / "scale_vs_robustness.py"),
        "--workdir",
        str(tmp_path),
        "--num-motions",
        "40",
        "--renders",
        "1",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    assert "building 40 synthetic motions" in first
    assert "fraction  0.1: 3 motions, 9 fine-tuning pairs" in first
    assert len(list((tmp_path / "renders").glob("*.png"))) == 1
    second = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    assert "reusing corpus" in second and "building" not in second
