"""The tracking stack in one command: an MLflow tracking server (SQLite or PostgreSQL backend)
that stores artifacts in an S3-compatible bucket, bound to 127.0.0.1, plus the environment the
sweep needs to use it.

    python cluster/tracking_stack.py --storage s3://BUCKET/PREFIX [--s3-endpoint URL]
        [--backend-store-uri URI] [--host 127.0.0.1] [--port 5000] [--env-file FILE]
    python cluster/tracking_stack.py --local-s3       # also an S3 server on loopback (moto)

It checks the bucket first (a clear error naming the endpoint and bucket), starts `mlflow
server --artifacts-destination s3://BUCKET/PREFIX/mlflow` (clients upload through the server,
so only the server needs S3 credentials), waits until it answers, prints the `export` lines
for the sweep (MLFLOW_TRACKING_URI, and MOCLIP_RAY_STORAGE = s3://BUCKET/PREFIX/ray for Ray's
checkpoints) and runs until Ctrl-C. Credentials come from the environment or the instance
profile and are never printed or written.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from sweeps.storage import S3Location, StorageError, check_bucket, redact

HEALTH_TIMEOUT_S = 120.0  # mlflow server imports a lot: ~20 s on 2 busy cores
LOCAL_S3_KEY = "moclip-local"  # the moto server accepts any key; not a secret


class StackError(RuntimeError):
    """A service that cannot be started; the message names it and never holds a secret."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


def wait_until_up(url: str, process: subprocess.Popen, name: str, log: Path) -> None:
    """Return once `url` answers; else stop `process` and raise StackError."""
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"{name} exited with status {process.returncode}; see {log}")
        if answers(url):
            return
        time.sleep(0.5)
    stop(process)
    raise StackError(f"{name} did not answer at {url} within {HEALTH_TIMEOUT_S:.0f} s; see {log}")


def start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """A service in its own process group (mlflow server forks workers), output to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def stop(process: subprocess.Popen, timeout: float = 15.0) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def sweep_environment(tracking_uri: str, location: S3Location) -> dict:
    """What the sweep reads: where to track, and where Ray keeps checkpoints (PREFIX/ray, with
    pyarrow's endpoint_override for an S3-compatible server other than AWS)."""
    return {"MLFLOW_TRACKING_URI": tracking_uri, "MOCLIP_RAY_STORAGE": location.uri("ray")}


def executable(name: str) -> str:
    # the tools of this interpreter's environment first: the stack may run from a venv's python
    search = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    found = shutil.which(name, path=search)
    if found is None:
        raise StackError(f"{name!r} is not installed in this environment")
    return found


def start_local_s3(host: str, state: Path) -> tuple[str, subprocess.Popen]:
    """moto's S3 server on a free loopback port, with throwaway keys in this process's
    environment (never real keys to a throwaway server); (endpoint, process)."""
    port = free_port(host)
    endpoint = f"http://{host}:{port}"
    os.environ["AWS_ACCESS_KEY_ID"] = os.environ["AWS_SECRET_ACCESS_KEY"] = LOCAL_S3_KEY
    log = state / "s3.log"
    process = start([executable("moto_server"), "-H", host, "-p", str(port)], log, dict(os.environ))
    wait_until_up(f"{endpoint}/moto-api/", process, "moto S3 server", log)
    print(f"[stack] S3 (moto) on {endpoint}", flush=True)
    return endpoint, process


def start_mlflow(
    backend: str, artifacts: str, endpoint: str | None, host: str, port: int, state: Path
) -> subprocess.Popen:
    """`mlflow server` proxying artifacts to `artifacts`; returns once it answers."""
    env = dict(os.environ)
    if endpoint:
        env["MLFLOW_S3_ENDPOINT_URL"] = endpoint
    command = [executable("mlflow"), "server", "--backend-store-uri", backend]
    command += ["--artifacts-destination", artifacts, "--host", host, "--port", str(port)]
    command += ["--workers", "1"]
    log = state / "mlflow.log"
    process = start(command, log, env)
    wait_until_up(f"http://{host}:{port}/health", process, "mlflow server", log)
    return process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--storage",
        default=os.environ.get("MOCLIP_STORAGE", "s3://moclip-sweeps"),
        help="s3://BUCKET/PREFIX: MLflow artifacts go under PREFIX/mlflow, Ray's checkpoints "
        "under PREFIX/ray (default: $MOCLIP_STORAGE, else s3://moclip-sweeps)",
    )
    parser.add_argument(
        "--s3-endpoint",
        default=os.environ.get("MLFLOW_S3_ENDPOINT_URL"),
        help="an S3-compatible server (MinIO, ...), e.g. http://127.0.0.1:9000; default AWS",
    )
    parser.add_argument("--local-s3", action="store_true", help="run a moto S3 server on loopback")
    parser.add_argument("--create-bucket", action="store_true", help="create a missing bucket")
    parser.add_argument("--state-dir", type=Path, default=Path("moclip_tracking"))
    parser.add_argument(
        "--backend-store-uri", help="default sqlite:///STATE_DIR/mlflow.db; or postgresql://..."
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--env-file", type=Path, help="also write the export lines here")
    args = parser.parse_args(argv)

    state = args.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    services: list[subprocess.Popen] = []
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        location = S3Location.parse(args.storage)
        endpoint = args.s3_endpoint
        if args.local_s3:
            endpoint, moto = start_local_s3(args.host, state)
            services.append(moto)
        location = dataclasses.replace(location, endpoint=endpoint or location.endpoint)
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        check_bucket(location, create=args.create_bucket or args.local_s3)
        tracking_uri = f"http://{args.host}:{args.port}"
        if answers(f"{tracking_uri}/health"):
            print(f"[stack] an MLflow server already answers on {tracking_uri}; leaving it")
            return 0
        backend = args.backend_store_uri or f"sqlite:///{state / 'mlflow.db'}"
        artifacts = dataclasses.replace(location, endpoint=None).uri("mlflow")
        services.append(
            start_mlflow(backend, artifacts, location.endpoint, args.host, args.port, state)
        )
        print(
            f"[stack] MLflow on {tracking_uri} (backend {redact(backend)}, artifacts "
            f"{artifacts}); logs in {state}",
            flush=True,
        )
        exports = sweep_environment(tracking_uri, location)
        if args.local_s3:
            # The sweep's Ray workers write checkpoints to the local S3 server with these.
            exports["AWS_ACCESS_KEY_ID"] = exports["AWS_SECRET_ACCESS_KEY"] = LOCAL_S3_KEY
        lines = [f"export {k}='{v}'" for k, v in exports.items()]
        if args.env_file:
            tmp = args.env_file.with_name(args.env_file.name + ".tmp")
            tmp.write_text("\n".join(lines) + "\n")
            tmp.replace(args.env_file)  # whoever waits for the file reads it whole
        print("[stack] for the sweep:\n" + "\n".join(lines), flush=True)
        print("[stack] running; Ctrl-C stops it", flush=True)
        while not stopping:
            for process in services:
                if process.poll() is not None:
                    raise StackError(f"{process.args[0]} exited with status {process.returncode}")
            time.sleep(0.5)
        return 0
    except (StackError, StorageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        for process in reversed(services):
            stop(process)


if __name__ == "__main__":
    sys.exit(main())
