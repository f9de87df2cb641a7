#!/usr/bin/env python3
"""Set up ./.venv (once, again when the requirements change) and run the main job or the tests.

    python3 dev.py run  [args for sweeps/scale_vs_robustness.py]
    python3 dev.py test [--fast] [args for pytest]   (--fast: all but the `heavy` tests)

Needs only Python >= 3.10 with pip and venv. The dev/CI path pins the whole environment with
requirements/constraints-dev.txt; installing the package elsewhere (pip install .) does not.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("MOCLIP_VENV", ROOT / ".venv"))
CONSTRAINTS = ROOT / "requirements" / "constraints-dev.txt"
# The torch/torchvision pair is pinned here, not in pyproject.toml, so users keep their own.
DEV_PINS = ["torch==2.14.1", "torchvision==0.29.1"]


def _python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _requirements_digest() -> str:
    digest = hashlib.sha256()
    for path in (ROOT / "pyproject.toml", CONSTRAINTS, Path(__file__)):
        digest.update(path.read_bytes())
    return digest.hexdigest()


# Debian packages the project uses, each with a file that shows it is installed: WordNet 3.0
# for TextAttack's synonym swaps (no download at run time; moclip.attacks.resources copies it
# into nltk's layout), and Chromium with its driver for the MLflow UI test and screenshots.
APT_PACKAGES = {
    "WordNet 3.0": (
        ["wordnet-base", "wordnet-sense-index"],
        Path("/usr/share/wordnet/index.sense"),
    ),
    "Chromium": (["chromium", "chromium-driver"], Path("/usr/bin/chromedriver")),
}


def ensure_apt_packages() -> None:
    missing = [
        (what, packages) for what, (packages, marker) in APT_PACKAGES.items() if not marker.exists()
    ]
    if not missing:
        return
    if not shutil.which("apt-get"):
        for what, packages in missing:
            print(f"[dev] warning: no apt-get; install {what} ({' '.join(packages)}) by hand")
        return
    packages = [name for _, names in missing for name in names]
    sudo = [] if os.geteuid() == 0 or not shutil.which("sudo") else ["sudo"]
    install = [*sudo, "apt-get", "install", "-y", "-q", *packages]
    print(f"[dev] installing {' '.join(packages)} with apt-get", flush=True)
    quiet = {"stdout": subprocess.DEVNULL}
    if subprocess.run(install, **quiet).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-q"], check=True, **quiet)
        subprocess.run(install, check=True, **quiet)


def ensure_env() -> Path:
    stamp = VENV / ".moclip-sweeps-installed"
    want = _requirements_digest()
    if stamp.exists() and stamp.read_text() == want:
        return _python()
    started = time.monotonic()
    if not _python().exists():
        print(f"[dev] creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    print(
        "[dev] installing moclip-sweeps and its pinned environment (a few minutes the first time)",
        flush=True,
    )
    subprocess.run(
        [
            str(_python()),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-c",
            str(CONSTRAINTS),
            *DEV_PINS,
            "-e",
            f"{ROOT}[dev]",
        ],
        check=True,
    )
    stamp.write_text(want)
    print(f"[dev] environment ready in {time.monotonic() - started:.0f} s", flush=True)
    return _python()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test", "setup"}:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    python = ensure_env()
    ensure_apt_packages()
    if argv[0] == "setup":
        return 0
    if argv[0] == "run":
        cmd = [str(python), str(ROOT / "sweeps" / "scale_vs_robustness.py"), *argv[1:]]
    else:
        args = argv[1:]
        if "--fast" in args:  # everything but multi-process Ray, MLflow servers and two nodes
            args = [a for a in args if a != "--fast"] + ["-m", "not heavy"]
        cmd = [str(python), "-m", "pytest", *args]
    return subprocess.run(cmd, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
