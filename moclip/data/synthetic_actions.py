"""Parametric joint-angle programs for the synthetic corpus, one function per action family.

Each program returns a `Clip`: per-frame Euler angles for every joint of the HumanML3D skeleton,
root velocity and turning rate in the body's facing frame, flight height, and the verb phrases
that describe it (the parameters it used: speed, direction, side, repetitions, amplitude).

Angles are radians about the joint's rest axes (the body faces +z, its left is +x), applied as
q = q_y(twist) q_z(abduction) q_x(flexion). Signs: hip and shoulder flexion (limb forward) and
elbow flexion are negative about x; knee flexion is positive; spine forward bend is positive;
abduction is +z for the left limb and -z for the right; yaw to the left is +y.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from moclip.skeletons import HUMANML3D

FPS = 20
FLEX, ABDUCT, TWIST = 0, 1, 2
_J = {name: i for i, name in enumerate(HUMANML3D.joint_names)}
SPINE = (_J["spine1"], _J["spine2"], _J["spine3"])
NUMBERS = {
    1: "one",
    2: "two",
    3: "three",
    4: "four",
    5: "five",
    6: "six",
    7: "seven",
    8: "eight",
    9: "nine",
    10: "ten",
}
TIMES = {1: "once", 2: "twice", 3: "three times", 4: "four times", 5: "five times", 6: "six times"}


def joint(side: str, part: str) -> int:
    """Index of e.g. ('left', 'hip')."""
    return _J[f"{side}_{part}"]


def other(side: str) -> str:
    return "right" if side == "left" else "left"


def lateral(side: str) -> float:
    """+1 for the left side, -1 for the right: the sign of abduction and of sideways motion."""
    return 1.0 if side == "left" else -1.0


@dataclass
class Clip:
    """One action's program; arrays have one row per frame."""

    family: str
    angles: np.ndarray  # (T, J, 3) Euler angles (flex, abduct, twist)
    velocity: (
        np.ndarray
    )  # (T, 2) root velocity on the floor, facing frame (x left, z forward), m/frame
    yaw_rate: np.ndarray  # (T,) radians per frame, + turns left
    lift: np.ndarray  # (T,) height of the lowest foot above the floor (flight), m
    phrases: list[str]  # third-person verb phrases, e.g. "walks forward slowly"
    starts_seated: bool = False
    ends_seated: bool = False
    params: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.yaw_rate)


def empty_clip(family: str, num_frames: int) -> Clip:
    return Clip(
        family=family,
        angles=np.zeros((num_frames, HUMANML3D.num_joints, 3)),
        velocity=np.zeros((num_frames, 2)),
        yaw_rate=np.zeros(num_frames),
        lift=np.zeros(num_frames),
        phrases=[],
    )


def envelope(num_frames: int, ramp: int = 8) -> np.ndarray:
    """0 -> 1 -> 0 with raised-cosine ramps of `ramp` frames at both ends."""
    env = np.ones(num_frames)
    ramp = min(ramp, num_frames // 2)
    if ramp:
        rise = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, ramp))
        env[:ramp] = rise
        env[-ramp:] = rise[::-1]
    return env


def bump(num_frames: int, start: float, end: float) -> np.ndarray:
    """sin^2 pulse, 0 outside [start, end) and 1 at its middle; frame indices may be fractional."""
    t = np.arange(num_frames, dtype=np.float64)
    inside = (t >= start) & (t < end)
    out = np.zeros(num_frames)
    out[inside] = np.sin(np.pi * (t[inside] - start) / (end - start)) ** 2
    return out


def hold(num_frames: int, rise: tuple[float, float], fall: tuple[float, float]) -> np.ndarray:
    """Smoothstep from 0 to 1 over `rise`, stays at 1, smoothstep back to 0 over `fall`."""
    t = np.arange(num_frames, dtype=np.float64)

    def step(a: float, b: float) -> np.ndarray:
        x = np.clip((t - a) / max(b - a, 1e-9), 0.0, 1.0)
        return x * x * (3 - 2 * x)

    return step(*rise) * (1.0 - step(*fall))


def choose(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


# --- locomotion --------------------------------------------------------------------------------


def _gait(
    clip: Clip,
    period: float,
    hip: float,
    knee: float,
    arm: float,
    elbow: float,
    lean: float = 0.0,
    reverse: bool = False,
    knees_up: bool = False,
) -> np.ndarray:
    """Alternating leg swing with opposite arm swing; returns the phase per frame."""
    n = clip.num_frames
    env = envelope(n)
    phase = 2 * np.pi * np.arange(n) / period * (-1 if reverse else 1)
    for side, offset in (("left", 0.0), ("right", np.pi)):
        p = phase + offset
        swing = np.cos(p) if not reverse else -np.cos(p)
        if knees_up:
            clip.angles[:, joint(side, "hip"), FLEX] = -hip * np.maximum(0, np.sin(p)) * env
            clip.angles[:, joint(side, "knee"), FLEX] = knee * np.maximum(0, np.sin(p)) * env
        else:
            clip.angles[:, joint(side, "hip"), FLEX] = -hip * np.sin(p) * env
            clip.angles[:, joint(side, "knee"), FLEX] = (
                knee * np.maximum(0, swing) ** 1.5 + 0.08
            ) * env
        clip.angles[:, joint(side, "ankle"), FLEX] = -0.15 * np.maximum(0, swing) * env
        clip.angles[:, joint(side, "shoulder"), FLEX] = arm * np.sin(p) * env
        clip.angles[:, joint(side, "shoulder"), ABDUCT] = lateral(side) * 0.08 * env
        clip.angles[:, joint(side, "elbow"), FLEX] = -elbow * env
    for j in SPINE:
        clip.angles[:, j, FLEX] = lean / 3 * env
    return phase


def walk(rng: np.random.Generator, max_frames: int) -> Clip:
    adverb, speed, cadence = choose(
        rng, [("slowly", 0.8, 1.5), ("", 1.2, 1.8), ("quickly", 1.6, 2.1)]
    )
    backward = adverb != "quickly" and rng.random() < 0.25
    direction = "backward" if backward else "forward"
    step_frames = FPS / cadence
    steps = int(rng.integers(3, 9))
    steps = max(2, min(steps, int((max_frames - 10) / step_frames)))
    n = int(round(steps * step_frames + 10))
    clip = empty_clip("walk", n)
    leg = 0.87
    step_len = speed / cadence
    hip = np.arcsin(min(0.9, step_len / (2 * leg)))
    _gait(
        clip,
        2 * step_frames,
        hip,
        0.9,
        0.35,
        0.25,
        lean=-0.05 if backward else 0.05,
        reverse=backward,
    )
    clip.velocity[:, 1] = (-1 if backward else 1) * speed / FPS * envelope(n)
    adv = f" {adverb}" if adverb else ""
    slow_word = {"slowly": "slow ", "quickly": "quick ", "": ""}[adverb]
    clip.phrases = [
        f"walks {direction}{adv}",
        f"{adverb + ' ' if adverb else ''}walks {direction}",
        f"takes {NUMBERS[steps]} {slow_word}steps {direction}",
        f"moves {direction}{adv} for {NUMBERS[steps]} steps",
    ]
    if not backward:
        clip.phrases.append(
            {
                "slowly": "strolls forward slowly",
                "": "walks straight ahead",
                "quickly": "walks briskly forward",
            }[adverb]
        )
    clip.params = {"speed": speed, "direction": direction, "steps": steps}
    return clip


def run(rng: np.random.Generator, max_frames: int) -> Clip:
    adverb, speed = choose(rng, [("", 2.8), ("fast", 3.6), ("slowly", 2.2)])
    cadence = 2.8
    step_frames = FPS / cadence
    steps = max(3, min(int(rng.integers(4, 13)), int((max_frames - 10) / step_frames)))
    n = int(round(steps * step_frames + 10))
    clip = empty_clip("run", n)
    phase = _gait(clip, 2 * step_frames, 0.55, 1.6, 0.7, 1.4, lean=0.2)
    clip.lift = 0.06 * np.maximum(0, np.sin(2 * phase)) * envelope(n)
    clip.velocity[:, 1] = speed / FPS * envelope(n)
    adv = f" {adverb}" if adverb else ""
    clip.phrases = [
        f"runs forward{adv}",
        f"runs{adv} in a straight line",
        "sprints forward" if adverb == "fast" else f"jogs forward{adv}",
        f"runs ahead{adv}",
    ]
    clip.params = {"speed": speed, "steps": steps}
    return clip


def jog_in_place(rng: np.random.Generator, max_frames: int) -> Clip:
    adverb, cadence = choose(rng, [("", 2.6), ("quickly", 3.2), ("slowly", 2.0)])
    step_frames = FPS / cadence
    steps = max(4, min(int(rng.integers(6, 17)), int((max_frames - 10) / step_frames)))
    n = int(round(steps * step_frames + 10))
    clip = empty_clip("jog in place", n)
    phase = _gait(clip, 2 * step_frames, 0.9, 1.7, 0.6, 1.4, lean=0.05, knees_up=True)
    clip.lift = 0.04 * np.maximum(0, np.sin(2 * phase + np.pi)) * envelope(n)
    adv = f" {adverb}" if adverb else ""
    clip.phrases = [
        f"jogs in place{adv}",
        f"runs on the spot{adv}",
        f"jogs on the spot{adv}, lifting the knees",
        f"{adverb + ' ' if adverb else ''}jogs in place",
    ]
    clip.params = {"cadence": cadence, "steps": steps}
    return clip


def side_step(rng: np.random.Generator, max_frames: int) -> Clip:
    side = choose(rng, ["left", "right"])
    step_frames = 14
    steps = max(2, min(int(rng.integers(2, 7)), int((max_frames - 10) / step_frames)))
    n = steps * step_frames + 10
    clip = empty_clip("side step", n)
    env = envelope(n)
    phase = 2 * np.pi * np.arange(n) / step_frames
    lead, trail = joint(side, "hip"), joint(other(side), "hip")
    spread = 0.25 * (0.5 - 0.5 * np.cos(phase)) * env
    clip.angles[:, lead, ABDUCT] = lateral(side) * spread
    clip.angles[:, trail, ABDUCT] = -lateral(side) * 0.4 * spread
    for s in ("left", "right"):
        clip.angles[:, joint(s, "knee"), FLEX] = 0.15 * env
        clip.angles[:, joint(s, "elbow"), FLEX] = -0.3 * env
    clip.velocity[:, 0] = lateral(side) * 0.45 * 2 / step_frames * np.sin(phase / 2) ** 2 * env
    clip.phrases = [
        f"steps to the {side}",
        f"side steps to the {side} {TIMES.get(steps, '')}",
        f"shuffles sideways to the {side}",
        f"takes {NUMBERS[steps]} steps to the {side}",
    ]
    clip.params = {"side": side, "steps": steps}
    return clip


def turn(rng: np.random.Generator, max_frames: int) -> Clip:
    side = choose(rng, ["left", "right"])
    degrees, words = choose(
        rng,
        [
            (90, ["turns {side}", "turns to the {side}", "turns ninety degrees to the {side}"]),
            (
                180,
                ["turns around to the {side}", "turns around", "turns half a circle to the {side}"],
            ),
            (
                360,
                [
                    "turns in a full circle to the {side}",
                    "spins around to the {side}",
                    "turns all the way around to the {side}",
                ],
            ),
        ],
    )
    n = min(max_frames, int(20 + degrees / 90 * 16))
    clip = empty_clip("turn", n)
    _gait(clip, 14, 0.2, 0.7, 0.1, 0.3)
    env = envelope(n, 10)
    clip.yaw_rate = lateral(side) * np.deg2rad(degrees) * env / env.sum()
    clip.phrases = [w.format(side=side) for w in words] + [f"turns {degrees} degrees to the {side}"]
    clip.params = {"side": side, "degrees": degrees}
    return clip


# --- whole-body actions ------------------------------------------------------------------------


def jump(rng: np.random.Generator, max_frames: int) -> Clip:
    forward = rng.random() < 0.5
    high = rng.random() < 0.3
    per = 34
    reps = max(1, min(int(rng.integers(1, 4)), (max_frames - 8) // per))
    n = reps * per + 8
    clip = empty_clip("jump", n)
    flight = 10.0 if not high else 13.0
    for r in range(reps):
        t0 = 4 + r * per
        crouch = bump(n, t0, t0 + 14) + bump(n, t0 + 14 + flight, t0 + 28 + flight)
        for s in ("left", "right"):
            clip.angles[:, joint(s, "hip"), FLEX] -= 0.9 * crouch
            clip.angles[:, joint(s, "knee"), FLEX] += 1.5 * crouch
            clip.angles[:, joint(s, "ankle"), FLEX] -= 0.4 * crouch
            swing = bump(n, t0 + 8, t0 + 12 + flight)
            clip.angles[:, joint(s, "shoulder"), FLEX] += 0.6 * crouch - 2.2 * swing
        for j in SPINE:
            clip.angles[:, j, FLEX] += 0.2 * crouch
        air = np.arange(n) - (t0 + 11)
        height = (0.45 if high else 0.3) * 4 * air * (flight - air) / flight**2
        clip.lift += np.where((air >= 0) & (air <= flight), height, 0.0)
        if forward:
            clip.velocity[:, 1] += np.where((air >= 0) & (air <= flight), 0.7 / flight, 0.0)
    clip.lift = np.maximum(clip.lift, 0)
    how = "high " if high else ""
    where = "forward" if forward else "in place"
    clip.phrases = [
        f"jumps {how}{where} {TIMES[reps]}".replace("  ", " "),
        f"jumps {where} {TIMES[reps]}",
        f"does {NUMBERS[reps]} {'high ' if high else ''}jumps {where}",
        f"leaps {where} {TIMES[reps]}",
    ]
    clip.params = {"forward": forward, "high": high, "reps": reps}
    return clip


def hop(rng: np.random.Generator, max_frames: int) -> Clip:
    side = choose(rng, ["left", "right"])
    per = 12
    reps = max(2, min(int(rng.integers(2, 7)), (max_frames - 16) // per))
    n = reps * per + 16
    clip = empty_clip("hop", n)
    env = hold(n, (0, 8), (n - 8, n))
    free = other(side)
    clip.angles[:, joint(free, "hip"), FLEX] = -0.5 * env
    clip.angles[:, joint(free, "knee"), FLEX] = 1.6 * env
    for s in ("left", "right"):
        clip.angles[:, joint(s, "shoulder"), ABDUCT] = lateral(s) * 0.5 * env
    for r in range(reps):
        t0 = 8 + r * per
        crouch = bump(n, t0, t0 + 6) + bump(n, t0 + 9, t0 + 12)
        clip.angles[:, joint(side, "hip"), FLEX] -= 0.3 * crouch
        clip.angles[:, joint(side, "knee"), FLEX] += 0.6 * crouch
        air = np.arange(n) - (t0 + 4)
        clip.lift += np.where((air >= 0) & (air <= 6), 0.12 * 4 * air * (6 - air) / 36, 0.0)
    clip.phrases = [
        f"hops on the {side} leg {TIMES[reps]}",
        f"hops on one leg, the {side} one",
        f"jumps on the {side} foot {TIMES[reps]}",
        f"balances on the {side} leg and hops",
    ]
    clip.params = {"side": side, "reps": reps}
    return clip


def squat(rng: np.random.Generator, max_frames: int) -> Clip:
    deep = rng.random() < 0.5
    per = int(rng.integers(28, 40))
    reps = max(1, min(int(rng.integers(1, 6)), (max_frames - 6) // per))
    n = reps * per + 6
    clip = empty_clip("squat", n)
    depth = 1.3 if deep else 0.7
    down = sum(bump(n, 3 + r * per, 3 + (r + 1) * per) for r in range(reps))
    for s in ("left", "right"):
        clip.angles[:, joint(s, "hip"), FLEX] = -depth * down
        clip.angles[:, joint(s, "knee"), FLEX] = 1.9 * depth * down
        clip.angles[:, joint(s, "ankle"), FLEX] = -0.9 * depth * down
        clip.angles[:, joint(s, "shoulder"), FLEX] = -1.3 * down
    for j in SPINE:
        clip.angles[:, j, FLEX] = 0.12 * depth * down
    word = "deep " if deep else ""
    clip.phrases = [
        f"does {NUMBERS[reps]} {word}squats",
        f"squats {'deeply ' if deep else ''}{TIMES[reps]}",
        f"squats down and stands back up {TIMES[reps]}",
        f"bends the knees into a {word}squat {TIMES[reps]}",
    ]
    clip.params = {"deep": deep, "reps": reps}
    return clip


def _seated(n: int, clip: Clip, amount: np.ndarray) -> None:
    for s in ("left", "right"):
        clip.angles[:, joint(s, "hip"), FLEX] = -1.5 * amount
        clip.angles[:, joint(s, "knee"), FLEX] = 1.5 * amount
        clip.angles[:, joint(s, "shoulder"), FLEX] = -0.3 * amount
        clip.angles[:, joint(s, "elbow"), FLEX] = -0.8 * amount
    for j in SPINE:
        clip.angles[:, j, FLEX] = 0.1 * amount


def sit_down(rng: np.random.Generator, max_frames: int) -> Clip:
    duration = int(rng.integers(24, 40))
    n = min(max_frames, duration + int(rng.integers(16, 30)))
    clip = empty_clip("sit down", n)
    _seated(n, clip, hold(n, (4, 4 + duration), (10**6, 10**6 + 1)))
    # The pelvis goes down and back onto an (invisible) seat.
    clip.velocity[:, 1] = -0.25 / duration * ((np.arange(n) >= 4) & (np.arange(n) < 4 + duration))
    slow = duration > 32
    clip.phrases = [
        "sits down" + (" slowly" if slow else ""),
        "sits down on a chair",
        "lowers down to sit" + (" slowly" if slow else ""),
        "takes a seat",
    ]
    clip.ends_seated = True
    clip.params = {"duration": duration}
    return clip


def stand_up(rng: np.random.Generator, max_frames: int) -> Clip:
    duration = int(rng.integers(20, 36))
    n = min(max_frames, duration + int(rng.integers(16, 30)))
    clip = empty_clip("stand up", n)
    start = n - duration - 6
    _seated(n, clip, hold(n, (-2, -1), (start, start + duration)))
    clip.velocity[:, 1] = (
        0.25 / duration * ((np.arange(n) >= start) & (np.arange(n) < start + duration))
    )
    clip.phrases = [
        "stands up",
        "gets up from a chair",
        "rises from sitting to standing",
        "stands up from a seated position",
    ]
    clip.starts_seated = True
    clip.params = {"duration": duration}
    return clip


def bend_pick_up(rng: np.random.Generator, max_frames: int) -> Clip:
    hand = choose(rng, ["left", "right", "both"])
    n = min(max_frames, int(rng.integers(50, 75)))
    clip = empty_clip("bend and pick up", n)
    down = hold(n, (4, 22), (n - 24, n - 6))
    for j in SPINE:
        clip.angles[:, j, FLEX] = 0.45 * down
    for s in ("left", "right"):
        clip.angles[:, joint(s, "hip"), FLEX] = -0.35 * down
        clip.angles[:, joint(s, "knee"), FLEX] = 0.5 * down
        # The torso bends about 1.35 rad: a reaching arm flexes as much to point at the floor,
        # a free arm less, resting bent towards the knee instead of sticking out forward.
        reaching = hand in (s, "both")
        clip.angles[:, joint(s, "shoulder"), FLEX] = (-1.35 if reaching else -0.8) * down
        clip.angles[:, joint(s, "elbow"), FLEX] = (-0.1 if reaching else -0.6) * down
    which = "both hands" if hand == "both" else f"the {hand} hand"
    clip.phrases = [
        f"bends down to pick something up with {which}",
        f"bends over and picks up an object with {which}",
        f"reaches down to the floor with {which}",
        "picks something up from the ground",
    ]
    clip.params = {"hand": hand}
    return clip


def stretch(rng: np.random.Generator, max_frames: int) -> Clip:
    up = rng.random() < 0.6
    reps = int(rng.integers(1, 3))
    per = 40
    reps = max(1, min(reps, (max_frames - 4) // per))
    n = reps * per + 4
    clip = empty_clip("stretch", n)
    arms = sum(
        hold(n, (2 + r * per, 14 + r * per), (28 + r * per, 40 + r * per)) for r in range(reps)
    )
    for s in ("left", "right"):
        if up:
            clip.angles[:, joint(s, "shoulder"), FLEX] = -2.9 * arms
            clip.angles[:, joint(s, "ankle"), FLEX] = 0.5 * arms
        else:
            clip.angles[:, joint(s, "shoulder"), ABDUCT] = lateral(s) * 1.55 * arms
    if up:
        for j in SPINE:
            clip.angles[:, j, FLEX] = -0.06 * arms
    where = "up over the head" if up else "out to the sides"
    clip.phrases = [
        f"stretches both arms {where} {TIMES[reps]}",
        f"raises the arms {where} to stretch",
        f"stretches {where}",
        f"reaches {where} and stretches {TIMES[reps]}",
    ]
    clip.params = {"up": up, "reps": reps}
    return clip


def raise_arms(rng: np.random.Generator, max_frames: int) -> Clip:
    side = choose(rng, ["left", "right", "both"])
    front = rng.random() < 0.5
    n = min(max_frames, int(rng.integers(40, 64)))
    clip = empty_clip("raise arms", n)
    up = hold(n, (4, 18), (n - 18, n - 4))
    for s in ("left", "right"):
        if side in (s, "both"):
            if front:
                clip.angles[:, joint(s, "shoulder"), FLEX] = -1.55 * up
            else:
                clip.angles[:, joint(s, "shoulder"), ABDUCT] = lateral(s) * 1.55 * up
    which = "both arms" if side == "both" else f"the {side} arm"
    where = "in front" if front else "to the side"
    clip.phrases = [
        f"raises {which} {where} and lowers it"
        if side != "both"
        else f"raises {which} {where} and lowers them",
        f"lifts {which} {where} to shoulder height",
        f"raises {which} {where}",
    ]
    clip.params = {"side": side, "front": front}
    return clip


# --- arm and leg gestures ----------------------------------------------------------------------


def wave(rng: np.random.Generator, max_frames: int) -> Clip:
    side = choose(rng, ["left", "right"])
    high = rng.random() < 0.5
    reps = int(rng.integers(2, 6))
    per = 10
    n = min(max_frames, reps * per + 30)
    reps = (n - 30) // per
    clip = empty_clip("wave", n)
    up = hold(n, (3, 14), (n - 14, n - 3))
    shoulder = joint(side, "shoulder")
    clip.angles[:, shoulder, ABDUCT] = lateral(side) * (2.5 if high else 1.3) * up
    clip.angles[:, joint(side, "elbow"), FLEX] = -(0.4 if high else 1.2) * up
    t = np.arange(n) - 15
    waving = np.where((t >= 0) & (t < reps * per), np.sin(2 * np.pi * t / per), 0.0)
    clip.angles[:, shoulder, ABDUCT] += lateral(side) * 0.35 * waving * up
    how = "high above the head" if high else "at shoulder height"
    clip.phrases = [
        f"waves the {side} hand {how}",
        f"waves with the {side} hand {TIMES.get(reps, 'several times')}",
        f"raises the {side} arm and waves",
        f"waves hello with the {side} hand",
    ]
    clip.params = {"side": side, "high": high, "reps": reps}
    return clip


def clap(rng: np.random.Generator, max_frames: int) -> Clip:
    per = 8
    reps = max(2, min(int(rng.integers(2, 9)), (max_frames - 24) // per))
    n = reps * per + 24
    clip = empty_clip("clap", n)
    up = hold(n, (2, 12), (n - 12, n - 2))
    t = np.arange(n) - 12
    together = np.where((t >= 0) & (t < reps * per), 0.5 - 0.5 * np.cos(2 * np.pi * t / per), 0.0)
    for s in ("left", "right"):
        clip.angles[:, joint(s, "shoulder"), FLEX] = -1.2 * up
        clip.angles[:, joint(s, "elbow"), FLEX] = -0.5 * up
        clip.angles[:, joint(s, "shoulder"), TWIST] = -lateral(s) * (0.15 + 0.45 * together) * up
    clip.phrases = [
        f"claps {TIMES.get(reps, f'{NUMBERS[reps]} times')}",
        "claps the hands in front of the chest",
        f"claps both hands together {TIMES.get(reps, f'{NUMBERS[reps]} times')}",
        "applauds",
    ]
    clip.params = {"reps": reps}
    return clip


def punch(rng: np.random.Generator, max_frames: int) -> Clip:
    side = choose(rng, ["left", "right", "both"])
    per = int(rng.integers(10, 16))
    reps = max(1, min(int(rng.integers(1, 6)), (max_frames - 20) // per))
    n = reps * per + 20
    clip = empty_clip("punch", n)
    guard = hold(n, (2, 10), (n - 10, n - 2))
    sides = ["left", "right"]
    for s in sides:
        clip.angles[:, joint(s, "shoulder"), FLEX] = -0.6 * guard
        clip.angles[:, joint(s, "elbow"), FLEX] = -1.9 * guard
    for r in range(reps):
        s = side if side != "both" else sides[r % 2]
        strike = bump(n, 10 + r * per, 10 + (r + 1) * per)
        clip.angles[:, joint(s, "shoulder"), FLEX] -= 0.95 * strike
        clip.angles[:, joint(s, "elbow"), FLEX] += 1.9 * strike
        for j in SPINE:
            clip.angles[:, j, TWIST] += -lateral(s) * 0.08 * strike
    which = "both fists, alternating" if side == "both" else f"the {side} fist"
    hand = "alternating hands" if side == "both" else f"the {side} hand"
    clip.phrases = [
        f"punches forward with {hand} {TIMES[reps]}",
        f"throws {NUMBERS[reps]} punches with {which}",
        f"punches {TIMES[reps]} with {hand}",
        f"boxes with {hand}",
    ]
    clip.params = {"side": side, "reps": reps}
    return clip


def kick(rng: np.random.Generator, max_frames: int) -> Clip:
    side = choose(rng, ["left", "right"])
    high = rng.random() < 0.4
    per = 22
    reps = max(1, min(int(rng.integers(1, 4)), (max_frames - 10) // per))
    n = reps * per + 10
    clip = empty_clip("kick", n)
    for r in range(reps):
        t0 = 5 + r * per
        chamber = bump(n, t0, t0 + per)
        snap = bump(n, t0 + 6, t0 + 16)
        clip.angles[:, joint(side, "hip"), FLEX] -= (1.4 if high else 0.9) * chamber
        clip.angles[:, joint(side, "knee"), FLEX] += 1.3 * chamber - 1.2 * snap
        clip.angles[:, joint(other(side), "knee"), FLEX] += 0.2 * chamber
        for s in ("left", "right"):
            clip.angles[:, joint(s, "shoulder"), ABDUCT] += lateral(s) * 0.4 * chamber
        for j in SPINE:
            clip.angles[:, j, FLEX] -= 0.05 * chamber
    how = "high " if high else ""
    clip.phrases = [
        f"kicks {how}with the {side} leg {TIMES[reps]}",
        f"kicks forward with the {side} foot",
        f"does {NUMBERS[reps]} {how}{side} kicks",
        f"kicks {TIMES[reps]} using the {side} leg",
    ]
    clip.params = {"side": side, "high": high, "reps": reps}
    return clip


def throw(rng: np.random.Generator, max_frames: int) -> Clip:
    side = choose(rng, ["left", "right"])
    per = 30
    reps = max(1, min(int(rng.integers(1, 4)), (max_frames - 10) // per))
    n = reps * per + 10
    clip = empty_clip("throw", n)
    for r in range(reps):
        t0 = 5 + r * per
        windup = bump(n, t0, t0 + 18)
        release = bump(n, t0 + 14, t0 + 26)
        shoulder = joint(side, "shoulder")
        clip.angles[:, shoulder, FLEX] += -2.6 * windup - 1.2 * release
        clip.angles[:, shoulder, ABDUCT] += lateral(side) * 0.4 * windup
        clip.angles[:, joint(side, "elbow"), FLEX] += -1.6 * windup
        for j in SPINE:
            clip.angles[:, j, TWIST] += (
                lateral(side) * 0.25 * windup - lateral(side) * 0.25 * release
            )
            clip.angles[:, j, FLEX] += 0.12 * release
        clip.angles[:, joint(other(side), "hip"), FLEX] -= 0.3 * release
        clip.angles[:, joint(other(side), "knee"), FLEX] += 0.3 * release
    clip.phrases = [
        f"throws a ball with the {side} hand {TIMES[reps]}",
        f"throws something overhand with the {side} arm",
        f"makes {NUMBERS[reps]} throws with the {side} arm",
        f"winds up and throws with the {side} hand",
    ]
    clip.params = {"side": side, "reps": reps}
    return clip


def dance(rng: np.random.Generator, max_frames: int) -> Clip:
    per = int(rng.integers(16, 24))
    reps = max(2, min(int(rng.integers(2, 7)), (max_frames - 8) // per))
    n = reps * per + 8
    clip = empty_clip("dance", n)
    env = envelope(n)
    phase = 2 * np.pi * np.arange(n) / per
    for s in ("left", "right"):
        side_phase = phase + (0 if s == "left" else np.pi)
        clip.angles[:, joint(s, "knee"), FLEX] = (
            0.2 + 0.35 * np.maximum(0, np.sin(side_phase))
        ) * env
        clip.angles[:, joint(s, "hip"), FLEX] = -0.15 * np.maximum(0, np.sin(side_phase)) * env
        clip.angles[:, joint(s, "shoulder"), ABDUCT] = (
            lateral(s) * (0.6 + 0.4 * np.sin(side_phase)) * env
        )
        clip.angles[:, joint(s, "elbow"), FLEX] = -1.0 * env
    for j in SPINE:
        clip.angles[:, j, ABDUCT] = 0.08 * np.sin(phase) * env
    clip.velocity[:, 0] = 0.3 * 2 * np.pi / per * np.cos(phase) / 2 * env
    clip.phrases = [
        f"dances side to side {TIMES.get(reps, 'several times')}",
        "does a dance step from side to side",
        "sways and dances with the arms out",
        "dances in place, stepping left and right",
    ]
    clip.params = {"reps": reps}
    return clip


ACTIONS = {
    "walk": walk,
    "run": run,
    "jog in place": jog_in_place,
    "side step": side_step,
    "turn": turn,
    "jump": jump,
    "hop": hop,
    "squat": squat,
    "sit down": sit_down,
    "stand up": stand_up,
    "bend and pick up": bend_pick_up,
    "stretch": stretch,
    "raise arms": raise_arms,
    "wave": wave,
    "clap": clap,
    "punch": punch,
    "kick": kick,
    "throw": throw,
    "dance": dance,
}
