import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_job(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "sweeps" / "scale_vs_robustness.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def test_main_job_builds_once_then_reuses(tmp_path):
    args = (f"workdir={tmp_path}", "data.num_motions=40", "grid.seeds=[0]")
    first = run_job(*args)
    assert first.returncode == 0, first.stderr
    assert "[config] resolved:" in first.stdout and "num_motions: 40" in first.stdout
    assert "building 40 synthetic motions" in first.stdout
    assert "seed 0 fraction  0.1: 3 motions, 9 fine-tuning pairs" in first.stdout
    assert len(list((tmp_path / "renders").glob("*.png"))) == 4
    second = run_job(*args)
    assert "reusing corpus" in second.stdout and "building" not in second.stdout


def test_main_job_rejects_a_bad_key_in_one_line(tmp_path):
    result = run_job(f"workdir={tmp_path}", "grid.fractons=[0.5]")
    assert result.returncode == 2
    assert "unknown key grid.fractons" in result.stderr.strip().splitlines()[-1]
