"""What the work on a cluster's node sees.

Its data: the driver builds the synthetic corpus in its own workdir, which other nodes do not
have; trials and stage-0 tasks there build it again at the same path (byte for byte, once per
node however many ask), and a node whose copy of the data differs from the driver's fails with
the path, the split and both fingerprints. Its device: the GPU Ray gave it, or the CPU."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import torch

from moclip.data.dataset import DatasetError
from sweeps.config import load_config
from sweeps.data import data_root, load_split, node_split
from sweeps.records import FinetuneJob

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "sweeps" / "configs" / "smoke.yaml"


def smoke(workdir: Path, *overrides: str):
    return load_config(SMOKE, [f"workdir={workdir}", *overrides])


def driver_corpus(tmp_path: Path):
    """The config, and the corpus folder and fingerprints the driver reads."""
    config = smoke(tmp_path / "head")
    root = data_root(config)
    fingerprints = {
        split: load_split("synthetic", root, split).fingerprint() for split in ("train", "test")
    }
    return config, root, fingerprints


def folder_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_on_node(config_workdir: str, root: str, fingerprint: str) -> tuple[int, str]:
    """One trial process of a worker node asking for the training split (its log set up as
    the sweep's trials set theirs)."""
    from sweeps.log import configure

    configure()
    config = smoke(Path(config_workdir))
    split = node_split(config, root, "train", fingerprint)
    return len(split.motion_ids), split.fingerprint()


def test_trials_on_a_node_without_the_corpus_build_it_once_byte_for_byte(tmp_path, capfd):
    config, root, fingerprints = driver_corpus(tmp_path)
    node_root = tmp_path / "worker-node" / Path(root).name  # the path, on a node that lacks it
    # three trial processes of that node start at once
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(3, mp_context=spawn) as pool:
        futures = [
            pool.submit(build_on_node, config.workdir, str(node_root), fingerprints["train"])
            for _ in range(3)
        ]
        answers = [future.result() for future in futures]
    assert {fingerprint for _, fingerprint in answers} == {fingerprints["train"]}
    assert answers[0][0] == len(load_split("synthetic", root, "train").motion_ids)
    assert folder_digest(node_root) == folder_digest(Path(root))
    built = capfd.readouterr().out.count(f"built the synthetic corpus {node_root}")
    assert built == 1


def test_a_fine_tune_on_a_node_without_the_corpus_trains_on_the_drivers_data(tmp_path):
    from sweeps.jobs import prepare_finetune

    config, root, fingerprints = driver_corpus(tmp_path)
    node_root = str(tmp_path / "worker-node" / "corpus")
    job = FinetuneJob("ft-test", "finetune", 0.5, 0, 1.0, 1.0, n_pairs=0)
    node = prepare_finetune(config, job, node_root, fingerprints)
    head = prepare_finetune(config, job, root, fingerprints)
    assert node.subset.fingerprint() == head.subset.fingerprint()
    assert node.meta(step=2).data_fingerprint == node.subset.fingerprint()  # checkpoints'
    torch.set_num_threads(1)
    losses = [[row["loss"] for row in run.fit("cpu")] for run in (node, head)]
    assert len(losses[0]) == node.config.steps and losses[0] == losses[1]
    scores = node.test_scores(node.model, torch.device("cpu"))
    assert scores == head.test_scores(head.model, torch.device("cpu"))


def test_a_node_whose_copy_differs_fails_with_the_path_split_and_fingerprints(tmp_path):
    from sweeps.jobs import prepare_finetune

    config, root, fingerprints = driver_corpus(tmp_path)
    stale = tmp_path / "worker-node" / "synthetic"
    shutil.copytree(root, stale)
    first = load_split("synthetic", root, "train").motion_ids[0]
    (stale / "texts" / f"{first}.txt").write_text("a person waves.#a/DET person/NOUN#0.0#0.0\n")
    job = FinetuneJob("ft-test", "finetune", 1.0, 0, 1.0, 1.0, n_pairs=0)
    with pytest.raises(DatasetError) as err:
        prepare_finetune(config, job, str(stale), fingerprints)
    message = str(err.value)
    assert str(stale) in message and "train split" in message
    assert socket.gethostname() in message and fingerprints["train"][:12] in message
    assert "\n" not in message
    # each split is checked on its own: the test split's motions are untouched
    assert node_split(config, str(stale), "test", fingerprints["test"]).fingerprint()
    # without the driver's fingerprints (a benchmark, say) the copy loads as it is
    assert node_split(config, str(stale), "train").fingerprint() != fingerprints["train"]


def test_a_missing_data_set_or_an_unwritable_corpus_path_is_one_clear_line(tmp_path):
    humanml3d = load_config(
        ROOT / "sweeps" / "configs" / "humanml3d.yaml",
        [f"workdir={tmp_path}", f"data.root={tmp_path / 'no-such-folder'}"],
    )
    with pytest.raises(DatasetError) as err:
        node_split(humanml3d, str(tmp_path / "no-such-folder"), "train")
    message = str(err.value)
    assert "no-such-folder" in message and socket.gethostname() in message
    assert "file_mounts" in message and "\n" not in message

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DatasetError) as err:
        node_split(smoke(tmp_path), str(blocker / "synthetic"), "train")
    assert "cannot build the synthetic corpus" in str(err.value)
    assert str(blocker / "synthetic") in str(err.value)


@pytest.mark.heavy
def test_the_stage0_training_task_builds_the_corpus_in_a_ray_worker(tmp_path):
    """The evaluator's training task, run by Ray in a worker process (threads running: the
    corpus is built there without a process pool) on a node path the corpus is not at."""
    import ray

    from sweeps.stage0 import train_evaluator_task

    config, root, fingerprints = driver_corpus(tmp_path)
    node_root = tmp_path / "worker-node" / "synthetic"
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(train_evaluator_task)
        blob, figures = ray.get(task.remote(config, str(node_root), fingerprints), timeout=300)
    finally:
        ray.shutdown()
    assert blob and figures["train_seconds"] >= 0
    assert folder_digest(node_root) == folder_digest(Path(root))
    from moclip.evaluation.evaluator import load_evaluator
    from sweeps.jobs import load_bytes

    _, state = load_bytes(blob, load_evaluator, "cpu")
    assert state["data_fingerprint"] == fingerprints["train"]  # the data it trained on


@pytest.mark.heavy
def test_work_runs_on_the_device_ray_gave_it():
    """No GPU asked for: the CPU, even where torch could see one. A GPU given (Ray's resource,
    declared here on a machine without one) but no CUDA for torch: a clear error, not a silent
    fall back to the CPU for a training meant for a GPU."""
    import ray

    from sweeps.data import assigned_device

    assert str(assigned_device()) == "cpu" and not ray.is_initialized()  # outside Ray: no Ray
    ray.init(num_cpus=1, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        on_cpu = ray.get(ray.remote(num_gpus=0)(assigned_device).remote(), timeout=120)
        assert str(on_cpu) == "cpu"
        given = ray.remote(num_gpus=1)(assigned_device).remote()
        if torch.cuda.is_available():  # a machine with a GPU: the one Ray gave
            assert ray.get(given, timeout=120).type == "cuda"
            return
        with pytest.raises(ray.exceptions.RayTaskError) as err:
            ray.get(given, timeout=120)
    finally:
        ray.shutdown()
    message = str(err.value)
    assert "Ray gave this work GPU(s) [0]" in message and "sees no CUDA device" in message
    assert socket.gethostname() in message


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def can_unshare() -> bool:
    return shutil.which("unshare") is not None and (
        subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False).returncode == 0
    )


class TwoNodes:
    """A Ray cluster of a head that runs no work (0 CPUs, like a driver's node) and one worker
    node of 2 CPUs whose processes see `hidden` as an empty folder, or as `contents`: they run
    in their own mount namespace, with a tmpfs mounted over it. Token authentication is on, with
    one token for both nodes and the sweep, as the cluster configs set it up."""

    def __init__(self, hidden: Path, contents: Path | None = None) -> None:
        ray = str(Path(sys.executable).parent / "ray")
        self.temp = tempfile.mkdtemp(prefix="rn", dir="/tmp")  # short: Ray's socket paths
        token = Path(self.temp) / "auth_token"  # the file `ray up` syncs to every node
        token.write_text(secrets.token_hex(32))
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        self.env.pop("RAY_AUTH_TOKEN", None)
        self.address = f"127.0.0.1:{free_port()}"
        port = self.address.split(":")[1]
        out = self.output = (Path(self.temp) / "nodes.log").open("w")  # the nodes' own output
        self.head = subprocess.Popen(
            [ray, "start", "--head", f"--port={port}", "--num-cpus=0", "--block",
             "--include-dashboard=false", f"--temp-dir={self.temp}"],
            stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
        )  # fmt: skip
        hidden.mkdir(parents=True, exist_ok=True)
        fill = (
            f" && cp -r {shlex.quote(str(contents))}/. {shlex.quote(str(hidden))}/"
            if contents
            else ""
        )
        script = (
            f"mount -t tmpfs tmpfs {shlex.quote(str(hidden))}{fill} && exec {ray} start "
            f"--address={self.address} --num-cpus=2 --block"
        )
        self.worker = subprocess.Popen(
            ["unshare", "-m", "sh", "-c", script],
            stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
        )  # fmt: skip

    def sweep(self, workdir: Path, *overrides: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(ROOT / "sweeps" / "scale_vs_robustness.py")]
        command += ["--config", str(SMOKE), f"workdir={workdir}", "ray.num_workers=0"]
        command += [f"ray.address={self.address}", *overrides]
        return subprocess.run(
            command, capture_output=True, text=True, env=self.env, timeout=900, check=False
        )

    def connects_without_the_token(self) -> str:
        """What a driver with authentication off gets from this cluster: "connected", or the
        error it fails with."""
        env = {k: v for k, v in self.env.items() if not k.startswith("RAY_AUTH_TOKEN")}
        code = f"import ray; ray.init(address={self.address!r}); print('connected')"
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**env, "RAY_AUTH_MODE": "disabled"},
            timeout=120,
            check=False,
        )
        return result.stdout.strip() if result.returncode == 0 else result.stderr[-2000:]

    def worker_logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in Path(self.temp).rglob("*.out"))

    def stop(self) -> None:
        for process in (self.worker, self.head):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in (self.worker, self.head):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self.output.close()
        shutil.rmtree(self.temp, ignore_errors=True)


needs_unshare = pytest.mark.skipif(
    not can_unshare(), reason="needs `unshare -m` (a mount namespace) to hide a node's data"
)


@needs_unshare
@pytest.mark.heavy
def test_the_sweep_on_two_nodes_builds_the_corpus_the_worker_node_lacks(tmp_path):
    workdir = tmp_path / "w"
    nodes = TwoNodes(workdir / "data")  # the driver writes the corpus there; the node sees none
    try:
        result = nodes.sweep(workdir)
        logs = nodes.worker_logs()
        refused = nodes.connects_without_the_token()
    finally:
        nodes.stop()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # the sweep ran with authentication on: a driver without the token is turned away
    assert "InvalidAuthToken" in refused, refused
    assert "6/6 eval" in result.stdout and "2 fine-tune(s) at once" in result.stdout
    built = [line for line in logs.splitlines() if "[data] built the synthetic corpus" in line]
    assert len(built) == 1, built  # once on the worker node, for all its tasks and trials
    assert str(workdir / "data" / "synthetic-n240-s0") in built[0]


@needs_unshare
@pytest.mark.heavy
def test_the_sweep_stops_in_one_line_when_a_nodes_copy_differs(tmp_path):
    workdir = tmp_path / "w"
    config = smoke(workdir)
    stale = tmp_path / "node-copy"
    shutil.copytree(data_root(smoke(tmp_path / "staging")), stale / Path(data_root(config)).name)
    first = min((stale / "synthetic-n240-s0" / "texts").glob("*.txt"))
    first.write_text("a person waves.#a/DET person/NOUN#0.0#0.0\n")
    nodes = TwoNodes(workdir / "data", contents=stale)
    try:
        result = nodes.sweep(workdir)
    finally:
        nodes.stop()
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "(stage 0) failed: DatasetError" in error[0]
    assert "is not the data the driver read" in error[0] and "split on node" in error[0]
    assert "Traceback" not in result.stderr
    assert "--resume" in result.stdout
