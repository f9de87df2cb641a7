"""The synthetic text-motion corpus, written in the HumanML3D folder layout.

    python -m moclip.data.synthetic --out DIR --num-motions N --seed S [--workers W]

Each motion is one action program of moclip.data.synthetic_actions, or two in sequence ("walks
forward, then turns left"), run through forward kinematics on the 22-joint skeleton, with the
root height set each frame so that the lowest foot rests on the floor (plus any flight phase).
Motion i depends only on (seed, i), so the same seed gives byte-identical files whatever the
number of workers.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moclip.data.captions import Caption, format_caption_line, tag_caption
from moclip.data.features import canonicalize, positions_to_features
from moclip.data.kinematics import forward_kinematics
from moclip.data.normalization import RunningStats
from moclip.data.quaternion import from_axis_angle, qmul, qrot, yaw_quat
from moclip.data.synthetic_actions import ACTIONS, FPS, Clip, empty_clip
from moclip.progress import progress_bar
from moclip.skeletons import HUMANML3D

MIN_FRAMES, MAX_FRAMES = 40, 196
SPLIT_SHARES = {"train": 0.80, "val": 0.05, "test": 0.15}
COMPOSE_PROBABILITY = 0.3
FORMAT_VERSION = 1

SUBJECTS = (
    "a person",
    "someone",
    "the man",
    "a woman",
    "the person",
    "a man",
    "somebody",
    "a figure",
    "the woman",
    "a human",
)
SINGLE_TEMPLATES = ("{s} {a}.",)
PAIR_TEMPLATES = (
    "{s} {a}, then {b}.",
    "{s} {a} and then {b}.",
    "first {s} {a}, then {b}.",
    "{s} {a}, and after that {b}.",
)


def _lexicon() -> dict[str, tuple[str, str]]:
    by_pos = {
        "DET": "a an the both all",
        "PRON": "someone somebody something it them that",
        "NOUN": "person man woman figure human degrees degree circle way leg legs foot knees chair "
        "seat position object floor ground hands hand arms arm head sides side shoulder "
        "height fist fists ball line spot place chest front squat squats punches kicks "
        "jumps throws steps step times dance",
        "ADV": "forward backward slowly quickly fast straight ahead briskly sideways around up "
        "down back deeply then first together over once twice overhand deep high",
        "ADJ": "slow quick left right full half seated several",
        "ADP": "in on to for with from above at out after of into",
        "NUM": "one two three four five six seven eight nine ten ninety 90 180 360",
        "CCONJ": "and",
        "INTJ": "hello",
        "PUNCT": ", .",
        "VERB": "walks takes moves strolls runs sprints jogs lifting shuffles turns spins leaps "
        "does hops balances stands bends sits lowers gets rises picks reaches stretches "
        "raises lifts waves claps applauds punches_v throws_v boxes kicks_v makes winds "
        "dances sways stepping sitting standing alternating using sit stretch pick",
    }
    lemmas = {
        "walks": "walk",
        "takes": "take",
        "moves": "move",
        "strolls": "stroll",
        "runs": "run",
        "sprints": "sprint",
        "jogs": "jog",
        "lifting": "lift",
        "shuffles": "shuffle",
        "turns": "turn",
        "spins": "spin",
        "leaps": "leap",
        "does": "do",
        "hops": "hop",
        "balances": "balance",
        "stands": "stand",
        "bends": "bend",
        "sits": "sit",
        "lowers": "lower",
        "gets": "get",
        "rises": "rise",
        "picks": "pick",
        "reaches": "reach",
        "stretches": "stretch",
        "raises": "raise",
        "lifts": "lift",
        "waves": "wave",
        "claps": "clap",
        "applauds": "applaud",
        "boxes": "box",
        "makes": "make",
        "winds": "wind",
        "dances": "dance",
        "sways": "sway",
        "stepping": "step",
        "sitting": "sit",
        "standing": "stand",
        "alternating": "alternate",
        "using": "use",
        "degrees": "degree",
        "legs": "leg",
        "knees": "knee",
        "hands": "hand",
        "arms": "arm",
        "sides": "side",
        "fists": "fist",
        "squats": "squat",
        "punches": "punch",
        "kicks": "kick",
        "jumps": "jump",
        "throws": "throw",
        "steps": "step",
        "times": "time",
        "an": "a",
    }
    lexicon: dict[str, tuple[str, str]] = {}
    for pos, words in by_pos.items():
        for word in words.split():
            if word.endswith("_v"):  # nouns that also end phrases as verbs; the noun tag wins
                continue
            lexicon.setdefault(word, (lemmas.get(word, word), pos))
    return lexicon


LEXICON = _lexicon()


@dataclass(frozen=True)
class SyntheticMotion:
    motion_id: str
    positions: np.ndarray  # (T, 22, 3) float32, canonical frame (floor, origin, facing +z)
    features: np.ndarray  # (T, 263) float32
    captions: tuple[Caption, ...]
    families: tuple[str, ...]
    params: tuple[dict, ...]  # each action's program parameters (side, speed, repetitions...)


def _pick_program(rng: np.random.Generator) -> list[str]:
    families = sorted(ACTIONS)
    first = families[int(rng.integers(len(families)))]
    if rng.random() >= COMPOSE_PROBABILITY:
        return [first]
    if first == "sit down":
        return [first, "stand up"]
    # Standing up only makes sense right after sitting down.
    allowed = [f for f in families if f not in (first, "stand up")]
    return [first, allowed[int(rng.integers(len(allowed)))]]


def _pad(clip: Clip, before: int, after: int) -> Clip:
    """Hold the first and last poses still for `before` and `after` frames."""
    padded = empty_clip(clip.family, clip.num_frames + before + after)
    padded.angles = np.concatenate(
        (np.repeat(clip.angles[:1], before, 0), clip.angles, np.repeat(clip.angles[-1:], after, 0))
    )
    padded.velocity[before : before + clip.num_frames] = clip.velocity
    padded.yaw_rate[before : before + clip.num_frames] = clip.yaw_rate
    padded.lift[before : before + clip.num_frames] = clip.lift
    padded.phrases = clip.phrases
    return padded


def _concat(clips: list[Clip]) -> Clip:
    out = empty_clip("+".join(c.family for c in clips), sum(c.num_frames for c in clips))
    out.angles = np.concatenate([c.angles for c in clips])
    out.velocity = np.concatenate([c.velocity for c in clips])
    out.yaw_rate = np.concatenate([c.yaw_rate for c in clips])
    out.lift = np.concatenate([c.lift for c in clips])
    return out


def _local_rotations(angles: np.ndarray) -> np.ndarray:
    """q = q_y(twist) q_z(abduction) q_x(flexion) per joint and frame."""

    def about(axis: int, values: np.ndarray) -> np.ndarray:
        rotvec = np.zeros(values.shape + (3,))
        rotvec[..., axis] = values
        return from_axis_angle(rotvec)

    return qmul(about(1, angles[..., 2]), qmul(about(2, angles[..., 1]), about(0, angles[..., 0])))


def _style(rng: np.random.Generator, angles: np.ndarray) -> np.ndarray:
    """Small per-person posture offsets (slouch, arm carriage), so no two motions are clones."""
    offsets = np.zeros(angles.shape[1:])
    for j in (HUMANML3D.index("spine1"), HUMANML3D.index("spine3"), HUMANML3D.index("neck")):
        offsets[j, 0] = rng.normal(0.0, 0.04)
    for j, sign in (
        (HUMANML3D.index("left_shoulder"), 1.0),
        (HUMANML3D.index("right_shoulder"), -1.0),
    ):
        offsets[j, 1] = sign * abs(rng.normal(0.05, 0.03))
    return angles + offsets


def simulate(clip: Clip, rng: np.random.Generator) -> np.ndarray:
    """World joint positions (T, 22, 3) of a program: FK, then feet on the floor, then root path."""
    skeleton = HUMANML3D
    n = clip.num_frames
    yaw = rng.uniform(-np.pi, np.pi) + np.concatenate(([0.0], np.cumsum(clip.yaw_rate)[:-1]))
    local = _local_rotations(_style(rng, clip.angles))
    local[:, 0] = qmul(yaw_quat(yaw), local[:, 0])
    body = forward_kinematics(local, np.zeros((n, 3)), skeleton)
    rest_height = skeleton.rest_positions()[:, 1]
    feet = [j for pair in skeleton.foot_joints for j in pair]
    ground = np.min(body[:, feet, 1] - rest_height[feet], axis=1)
    step = np.zeros((n, 3))
    step[:, 0], step[:, 2] = clip.velocity[:, 0], clip.velocity[:, 1]
    world_step = qrot(yaw_quat(yaw), step)
    root = np.concatenate((np.zeros((1, 3)), np.cumsum(world_step, axis=0)[:-1]))
    root += np.array([rng.uniform(-2, 2), 0.0, rng.uniform(-2, 2)])
    root[:, 1] = clip.lift - ground
    return body + root[:, None, :]


def _captions(rng: np.random.Generator, phrase_sets: list[list[str]]) -> tuple[Caption, ...]:
    captions: list[str] = []
    subjects = list(rng.permutation(len(SUBJECTS)))
    for attempt in range(50):
        chosen = [ps[int(rng.integers(len(ps)))] for ps in phrase_sets]
        if len(chosen) == 1:
            template = SINGLE_TEMPLATES[int(rng.integers(len(SINGLE_TEMPLATES)))]
            text = template.format(s=SUBJECTS[subjects[attempt % len(subjects)]], a=chosen[0])
        else:
            template = PAIR_TEMPLATES[int(rng.integers(len(PAIR_TEMPLATES)))]
            text = template.format(
                s=SUBJECTS[subjects[attempt % len(subjects)]], a=chosen[0], b=chosen[1]
            )
        text = " ".join(text.split())
        if text not in captions:
            captions.append(text)
        if len(captions) == 3:
            break
    return tuple(Caption(t, tag_caption(t, LEXICON)) for t in captions)


def make_motion(seed: int, index: int) -> SyntheticMotion:
    """Motion `index` of the corpus with `seed`: a pure function of the two."""
    rng = np.random.default_rng([seed, index])
    program = _pick_program(rng)
    budget = MAX_FRAMES if len(program) == 1 else MAX_FRAMES // 2
    clips = []
    for family in program:
        clip = ACTIONS[family](rng, budget)
        clips.append(clip)
        budget = MAX_FRAMES - sum(c.num_frames for c in clips)
    clip = _concat(clips)
    # One more position frame than feature frames; short programs stand still around the action.
    target = int(np.clip(clip.num_frames, MIN_FRAMES, MAX_FRAMES)) + 1
    if clip.num_frames > target:
        clip.angles, clip.velocity = clip.angles[:target], clip.velocity[:target]
        clip.yaw_rate, clip.lift = clip.yaw_rate[:target], clip.lift[:target]
    else:
        extra = target - clip.num_frames
        before = int(rng.integers(0, extra + 1))
        clip = _pad(clip, before, extra - before)
    positions = simulate(clip, rng)
    features = positions_to_features(positions, HUMANML3D)
    canonical = canonicalize(positions, HUMANML3D)[:-1].astype(np.float32)
    captions = _captions(rng, [c.phrases for c in clips])
    return SyntheticMotion(
        f"{index:06d}",
        canonical,
        features,
        captions,
        tuple(program),
        tuple(c.params for c in clips),
    )


def _write_motion(root: Path, motion: SyntheticMotion) -> None:
    np.save(root / "new_joints" / f"{motion.motion_id}.npy", motion.positions)
    np.save(root / "new_joint_vecs" / f"{motion.motion_id}.npy", motion.features)
    lines = "\n".join(format_caption_line(c) for c in motion.captions) + "\n"
    (root / "texts" / f"{motion.motion_id}.txt").write_text(lines, encoding="utf-8")


def _build_one(
    args: tuple[str, int, int],
) -> tuple[int, int, np.ndarray, np.ndarray, tuple[str, ...]]:
    root, seed, index = args
    motion = make_motion(seed, index)
    _write_motion(Path(root), motion)
    f = motion.features.astype(np.float64)
    return index, len(f), f.sum(0), (f * f).sum(0), motion.families


def split_ids(ids: list[str], seed: int) -> dict[str, list[str]]:
    """Random 80/5/15 train/val/test split by motion id, each split sorted."""
    order = np.random.default_rng([seed, 2**31 - 1]).permutation(len(ids))
    n_val = max(1, int(round(SPLIT_SHARES["val"] * len(ids))))
    n_test = max(1, int(round(SPLIT_SHARES["test"] * len(ids))))
    picked = [ids[i] for i in order]
    return {
        "test": sorted(picked[:n_test]),
        "val": sorted(picked[n_test : n_test + n_val]),
        "train": sorted(picked[n_test + n_val :]),
    }


def build_corpus(
    out: Path | str,
    num_motions: int,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Write `num_motions` synthetic motions under `out`; returns the corpus manifest."""
    if num_motions < 3:
        raise ValueError(f"--num-motions must be at least 3 (one per split), got {num_motions}")
    root = Path(out)
    for sub in ("new_joints", "new_joint_vecs", "texts"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    workers = workers or min(multiprocessing.cpu_count(), 8)
    ids = [f"{i:06d}" for i in range(num_motions)]
    splits = split_ids(ids, seed)
    train = set(splits["train"])
    stats = RunningStats(HUMANML3D.feature_dim)
    families: Counter[str] = Counter()
    started = time.monotonic()
    jobs = [(str(root), seed, i) for i in range(num_motions)]
    pool = ProcessPoolExecutor(workers, mp_context=pool_context()) if workers > 1 else _Serial()
    bar = progress_bar(num_motions, "synthetic corpus", enabled=progress)
    with pool:
        results = pool.map(_build_one, jobs, chunksize=32)
        for done, (index, length, s, sq, fams) in enumerate(results, start=1):
            families.update(fams)
            bar.update(1)
            if ids[index] in train:
                stats.add_sums(length, s, sq)
            if progress and (done % 1000 == 0 or done == num_motions):
                rate = done / (time.monotonic() - started)
                print(f"[synthetic] {done}/{num_motions} motions ({rate:.0f}/s)", flush=True)
    bar.close()
    mean, std = stats.result()
    np.save(root / "Mean.npy", mean)
    np.save(root / "Std.npy", std)
    for name, members in (*splits.items(), ("all", ids)):
        (root / f"{name}.txt").write_text("\n".join(members) + "\n", encoding="utf-8")
    manifest = {
        "generator": "moclip.data.synthetic",
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "num_motions": num_motions,
        "fps": FPS,
        "skeleton": HUMANML3D.name,
        "splits": {k: len(v) for k, v in splits.items()},
        "families": dict(sorted(families.items())),
    }
    (root / "corpus.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def pool_context() -> multiprocessing.context.BaseContext:
    """How the builder starts its worker processes: never by forking the caller.

    A caller may run threads (Ray's gRPC threads outlive ray.shutdown(), BLAS pools), and a
    child forked from a threaded process can deadlock or die on state another thread left
    half-written (seen: forks after a Ray Tune run died at once); the forkserver forks from a
    clean single-threaded server instead. The executor raises if a worker dies anyway, where
    multiprocessing.Pool waited forever for its lost tasks. The price is the spawn rule: a
    script that builds a corpus guards its code with `if __name__ == "__main__"`."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


class _Serial:
    """Executor look-alike for workers=1 (no processes)."""

    def __enter__(self) -> "_Serial":
        return self

    def __exit__(self, *exc) -> None:
        return None

    @staticmethod
    def map(fn, jobs, chunksize: int = 1):
        return map(fn, jobs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", required=True, type=Path, help="folder to write (HumanML3D layout)"
    )
    parser.add_argument("--num-motions", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        manifest = build_corpus(args.out, args.num_motions, args.seed, args.workers)
    except ValueError as err:
        parser.error(str(err))
    print(
        f"[synthetic] wrote {manifest['num_motions']} motions of {len(manifest['families'])} "
        f"action families to {args.out} in {time.monotonic() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
