"""Stick-figure renders of a motion: an animated GIF or a PNG strip of frames.

    python -m moclip.viz MOTION.npy --out FILE.gif|FILE.png [--skeleton NAME] [--frames K]

MOTION.npy holds joint positions (T x J x 3) or HumanML3D-style features (T x D); features are
turned back into positions first. A features file from a normalised model output can be given
with --mean/--std to undo the normalisation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # renders to files; no display on servers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import animation  # noqa: E402

from moclip.data.features import features_to_positions  # noqa: E402
from moclip.skeletons import (  # noqa: E402
    Skeleton,
    get_skeleton,
    skeleton_for_feature_dim,
    skeleton_for_num_joints,
)

_CHAIN_COLOURS = ("#d62728", "#1f77b4", "#333333", "#ff7f0e", "#2ca02c")


def as_positions(
    motion: np.ndarray, skeleton: Skeleton | None = None
) -> tuple[np.ndarray, Skeleton]:
    """(T, J, 3) positions and the skeleton, from positions or features."""
    motion = np.asarray(motion, dtype=np.float64)
    if motion.ndim == 3 and motion.shape[-1] == 3:
        skeleton = skeleton or skeleton_for_num_joints(motion.shape[1])
        return motion, skeleton
    if motion.ndim == 2:
        skeleton = skeleton or skeleton_for_feature_dim(motion.shape[1])
        return features_to_positions(motion, skeleton.num_joints), skeleton
    raise ValueError(
        f"a motion must be positions (T, J, 3) or features (T, D); got shape {motion.shape}"
    )


def _draw(ax, pose: np.ndarray, skeleton: Skeleton, trail: np.ndarray | None = None) -> None:
    # Plot (x, z, y) so that y, the height, is the vertical axis of matplotlib's 3D box.
    for colour, chain in zip(_CHAIN_COLOURS * 2, skeleton.chains):
        pts = pose[list(chain)]
        ax.plot(pts[:, 0], pts[:, 2], pts[:, 1], color=colour, linewidth=2.5)
    if trail is not None:
        ax.plot(trail[:, 0], trail[:, 2], np.zeros(len(trail)), color="#999999", linewidth=1)


def _frame_axes(ax, positions: np.ndarray, centre: np.ndarray, title: str) -> None:
    height = max(float(np.ptp(positions[..., 1])), 1.0)
    half = 0.6 * height
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[2] - half, centre[2] + half)
    ax.set_zlim(0, 2 * half)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=15, azim=-35)
    ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
    floor_x, floor_z = np.meshgrid(
        np.linspace(centre[0] - half, centre[0] + half, 2),
        np.linspace(centre[2] - half, centre[2] + half, 2),
    )
    ax.plot_surface(floor_x, floor_z, np.zeros_like(floor_x), color="#dddddd", alpha=0.5)
    ax.set_title(title, fontsize=8)


def render_strip(
    motion: np.ndarray,
    out: Path | str,
    frames: int = 6,
    title: str = "",
    skeleton: Skeleton | None = None,
) -> Path:
    """A PNG row of `frames` evenly spaced poses."""
    positions, skeleton = as_positions(motion, skeleton)
    picks = np.linspace(0, len(positions) - 1, frames).round().astype(int)
    fig = plt.figure(figsize=(2.2 * frames, 2.8))
    for k, t in enumerate(picks):
        ax = fig.add_subplot(1, frames, k + 1, projection="3d")
        _draw(ax, positions[t], skeleton, positions[: t + 1, 0])
        _frame_axes(ax, positions, positions[t, 0], f"t = {t / 20:.1f} s")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def render_gif(
    motion: np.ndarray,
    out: Path | str,
    title: str = "",
    fps: int = 20,
    skeleton: Skeleton | None = None,
) -> Path:
    """An animated GIF of the whole motion, the camera following the root."""
    positions, skeleton = as_positions(motion, skeleton)
    fig = plt.figure(figsize=(4, 4))
    ax = fig.add_subplot(projection="3d")

    def update(t: int):
        ax.clear()
        _draw(ax, positions[t], skeleton, positions[: t + 1, 0])
        _frame_axes(ax, positions, positions[t, 0], f"{title}  t = {t / 20:.1f} s".strip())
        return []

    anim = animation.FuncAnimation(fig, update, frames=len(positions), blit=False)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    anim.save(out, writer=animation.PillowWriter(fps=fps))
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draw a motion as a stick figure.")
    parser.add_argument("motion", type=Path, help="positions (T,J,3) or features (T,D) .npy")
    parser.add_argument("--out", type=Path, required=True, help="FILE.gif or FILE.png")
    parser.add_argument(
        "--skeleton", default=None, help="humanml3d, kit or kinect (default: by shape)"
    )
    parser.add_argument("--frames", type=int, default=6, help="poses in a PNG strip")
    parser.add_argument("--title", default="")
    parser.add_argument("--mean", type=Path, help="Mean.npy to undo normalisation of features")
    parser.add_argument("--std", type=Path, help="Std.npy to undo normalisation of features")
    args = parser.parse_args(argv)
    try:
        motion = np.load(args.motion)
    except (OSError, ValueError) as err:
        parser.error(f"cannot read {args.motion}: {err}")
    if args.mean and args.std:
        motion = motion * np.load(args.std) + np.load(args.mean)
    skeleton = get_skeleton(args.skeleton) if args.skeleton else None
    try:
        if args.out.suffix.lower() == ".gif":
            render_gif(motion, args.out, args.title, skeleton=skeleton)
        elif args.out.suffix.lower() == ".png":
            render_strip(motion, args.out, args.frames, args.title, skeleton=skeleton)
        else:
            parser.error(f"--out must end in .gif or .png, got {args.out}")
    except ValueError as err:
        parser.error(f"{args.motion}: {err}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
