"""`bevkd show --augment --depth`: the loader's view of a sample as a picture."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bevkd.cli import main
from bevkd.errors import BevkdError
from bevkd.viz.augmented import draw_augmented


def test_augmented_picture_with_depth_targets(synth_root, tmp_path):
    out = draw_augmented(synth_root, "1", str(tmp_path / "aug.png"), augment=True, depth=True)
    img = np.asarray(Image.open(out).convert("L"), np.float32)
    assert img.shape[1] >= 2000 and img.std() > 20  # a real picture, not a blank page


def test_show_cli_routes_augment_and_reports_bad_samples(synth_root, tmp_path, capsys):
    assert main(["show", "--data", synth_root, "--sample", "0", "--augment",
                 "--out", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").is_file()
    assert main(["show", "--data", synth_root, "--sample", "999", "--augment",
                 "--out", str(tmp_path / "b.png")]) == 2
    assert "out of range (0..5)" in capsys.readouterr().err
    with pytest.raises(BevkdError, match="unknown sample token"):
        draw_augmented(synth_root, "deadbeef", str(tmp_path / "c.png"))
