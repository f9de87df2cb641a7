"""MLflow tracking of a sweep: one experiment per study, a parent run per sweep, a child run per
fine-tune and per evaluation, found again by tag so a repeated or resumed sweep creates no
duplicates. Everything goes through an explicit MlflowClient (no active-run global state).
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from sweeps.storage import redact

PACKAGES = ("torch", "ray", "mlflow", "open_clip_torch", "textattack", "optuna", "numpy")
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter value
BATCH = 100  # MLflow's limit on params per log_batch call
# MLflow 3 opens an experiment in the view its kind names; without the tag it shows these runs
# in the GenAI view as "evaluation runs". The sweep trains models.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def resolve_tracking_uri(cli_value: str | None, configured: str | None, workdir: Path) -> str:
    """--tracking-uri, else the config's, else MLFLOW_TRACKING_URI, else a local SQLite store
    in the workdir."""
    uri = cli_value or configured or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(workdir / 'mlflow.db').resolve()}"


class TrackingError(RuntimeError):
    """A tracking server that does not answer; the message names it, password hidden."""


def check_reachable(uri: str, timeout: float = 5.0, attempts: int = 2) -> None:
    """Raise TrackingError within about attempts x timeout seconds when an http(s) tracking
    server does not answer; any HTTP answer (even 401 or 404) counts as reachable, and local
    stores always pass. MLflow's own client would retry for minutes before failing."""
    if not uri.startswith(("http://", "https://")):
        return
    url = f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1"
    reason = "no answer"
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=timeout):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = str(getattr(err, "reason", err))
        if attempt + 1 < attempts:
            time.sleep(1.0)
    raise TrackingError(
        f"MLflow tracking server {redact(uri)} is unreachable ({reason}); start it "
        "(python cluster/tracking_stack.py) or pass another --tracking-uri"
    )


def metric_name(name: str) -> str:
    """A metric name MLflow accepts: 't2m_R@1' -> 't2m_R_at_1'."""
    return re.sub(r"[^\w\-. :/]", "_", name.replace("@", "_at_"))


def flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    """{'a': {'b': 1}} -> {'a.b': '1'}: nested config as MLflow params, passwords hidden."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = redact(str(value))[:MAX_PARAM_LENGTH]
    return flat


def code_version(root: Path) -> str:
    """The git commit of the code (with '-dirty' for uncommitted changes), or 'unknown'."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}{'-dirty' if status else ''}" if commit else "unknown"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def platform_facts() -> dict[str, str]:
    """What besides code, config and data decides a CPU run's last digits: the vector
    instructions torch's kernels use (AVX-512 sums round otherwise than AVX2's;
    ATEN_CPU_CAPABILITY lowers them) and the processor architecture."""
    import torch

    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
    }


class Tracker:
    """The sweep's parent run and its children in one MLflow experiment."""

    def __init__(
        self,
        uri: str,
        experiment: str,
        artifact_root: Path | None = None,
        run_tags: dict[str, str] | None = None,
    ) -> None:
        self.uri = uri
        # on the parent and every child run (the protocol: in-domain or transfer)
        self.run_tags = dict(run_tags or {})
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            location = (artifact_root / experiment).resolve().as_uri() if artifact_root else None
            self.experiment_id = self.client.create_experiment(
                experiment, location, tags=EXPERIMENT_KIND
            )
        else:
            self.experiment_id = found.experiment_id
            for tag, value in EXPERIMENT_KIND.items():  # an experiment of an older version
                if found.tags.get(tag) != value:
                    self.client.set_experiment_tag(self.experiment_id, tag, value)
        self.parent_id: str | None = None

    def _find_run(self, tag: str, value: str):
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.{tag} = '{value}'", max_results=1
        )
        return runs[0] if runs else None

    def _find(self, tag: str, value: str) -> str | None:
        run = self._find_run(tag, value)
        return run.info.run_id if run else None

    def find_trial(self, key: str) -> str | None:
        """The run id of the child run of trial `key`, if it was logged in full before (a child
        run ends FINISHED only after its params, metrics and artifacts are in)."""
        run = self._find_run("trial_key", key)
        return run.info.run_id if run and run.info.status == "FINISHED" else None

    def _log(self, run_id: str, params=None, metrics=None, tags=None, step: int = 0) -> None:
        now = int(time.time() * 1000)
        params = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in (params or {}).items()]
        metrics = [Metric(metric_name(k), float(v), now, step) for k, v in (metrics or {}).items()]
        tags = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        for i in range(0, max(len(params), len(metrics), len(tags), 1), BATCH):
            self.client.log_batch(
                run_id, metrics[i : i + BATCH], params[i : i + BATCH], tags[i : i + BATCH]
            )

    def open_parent(self, sweep_key: str, name: str, params: dict, tags: dict) -> bool:
        """Create the sweep's parent run, or find it again; True when it already existed."""
        self.parent_id = self._find("sweep_key", sweep_key)
        if self.parent_id is not None:
            self.client.update_run(self.parent_id, status="RUNNING")
            return True
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={"sweep_key": sweep_key, "kind": "sweep", **self.run_tags, **tags},
        )
        self.parent_id = run.info.run_id
        self._log(self.parent_id, params=params)
        return False

    def child(
        self,
        key: str,
        name: str,
        params: dict,
        metrics: dict,
        step: int,
        tags: dict,
        artifacts: list[tuple[Path, str]] = (),
    ) -> tuple[str, bool]:
        """(run id, created): one child run per trial key, never two. A run of the key left
        unfinished (the sweep was killed while logging it) is deleted and logged again."""
        existing = self._find_run("trial_key", key)
        if existing is not None:
            if existing.info.status == "FINISHED":
                return existing.info.run_id, False
            self.client.delete_run(existing.info.run_id)
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={
                "mlflow.parentRunId": self.parent_id,
                "trial_key": key,
                **self.run_tags,
                **tags,
            },
        )
        run_id = run.info.run_id
        self._log(run_id, params=params, metrics=metrics, step=step)
        for path, folder in artifacts:
            self.client.log_artifact(run_id, str(path), folder)
        self.client.set_terminated(run_id)
        return run_id, True

    def log_metrics(self, run_id: str, metrics: dict, step: int = 0) -> None:
        self._log(run_id, metrics=metrics, step=step)

    def parent_metrics(self, metrics: dict, step: int = 0) -> None:
        self._log(self.parent_id, metrics=metrics, step=step)

    def parent_artifact(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.parent_id, str(path), folder)

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.parent_id, status)
