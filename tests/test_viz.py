import numpy as np
import pytest
from PIL import Image

from moclip.data.synthetic import make_motion
from moclip.viz import as_positions, main, render_gif, render_strip


def test_strip_and_gif_from_features_and_positions(tmp_path):
    motion = make_motion(0, 4)
    png = render_strip(motion.features, tmp_path / "m.png", frames=4, title=motion.captions[0].text)
    image = Image.open(png)
    assert image.width > 3 * image.height  # a row of poses
    pixels = np.asarray(image.convert("L"))
    assert (pixels < 128).mean() > 0.002  # something dark was drawn
    gif = render_gif(motion.positions[:12], tmp_path / "m.gif")
    with Image.open(gif) as frames:
        durations = []
        for k in range(frames.n_frames):  # Pillow merges identical frames, adding their times
            frames.seek(k)
            durations.append(frames.info["duration"])
    assert sum(durations) == pytest.approx(12 * 50, abs=12)


def test_features_and_positions_give_the_same_pose():
    motion = make_motion(0, 4)
    from_features, skeleton = as_positions(motion.features)
    assert skeleton.name == "humanml3d"
    assert np.abs(from_features - motion.positions).max() < 1e-3


def test_cli(tmp_path, capsys):
    motion = make_motion(0, 1)
    np.save(tmp_path / "m.npy", motion.positions)
    assert main([str(tmp_path / "m.npy"), "--out", str(tmp_path / "m.png"), "--frames", "3"]) == 0
    assert (tmp_path / "m.png").stat().st_size > 1000
    np.save(tmp_path / "bad.npy", np.zeros((5, 7, 2)))
    with pytest.raises(SystemExit):
        main([str(tmp_path / "bad.npy"), "--out", str(tmp_path / "b.png")])
    assert "bad.npy" in capsys.readouterr().err
