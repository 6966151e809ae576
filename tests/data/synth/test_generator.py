"""Generator behaviour: determinism, parallelism, argument errors, the rig, the ray caster."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from bevkd.cli import main
from bevkd.data.synth.generator import SynthConfig
from bevkd.data.synth.raycast import N_PRIM_FIELDS, cast_lidar, render_camera
from bevkd.data.synth.sensors import build_rig
from bevkd.structures.classes import CAMERA_CHANNELS
from bevkd.data.synth.world import generate_world
from bevkd.data.synth.writer import generate_dataset, split_scenes

TINY = dict(scenes=2, samples_per_scene=2, width=64, height=36, sweeps=2)


def _tree_digest(root: str) -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_same_seed_gives_byte_identical_files_whatever_the_worker_count(tmp_path):
    generate_dataset(SynthConfig(out=str(tmp_path / "a"), seed=3, workers=1, **TINY), False)
    generate_dataset(SynthConfig(out=str(tmp_path / "b"), seed=3, workers=2, **TINY), False)
    a, b = _tree_digest(tmp_path / "a"), _tree_digest(tmp_path / "b")
    assert len(a) > 30 and a == b


def test_different_seed_gives_a_different_world(tmp_path):
    generate_dataset(SynthConfig(out=str(tmp_path / "a"), seed=1, workers=1, **TINY), False)
    generate_dataset(SynthConfig(out=str(tmp_path / "b"), seed=2, workers=1, **TINY), False)
    a, b = _tree_digest(tmp_path / "a"), _tree_digest(tmp_path / "b")
    shared = set(a) & set(b)
    assert a["v1.0-synth/sample_annotation.json"] != b["v1.0-synth/sample_annotation.json"]
    assert not any(a[k] == b[k] for k in shared if k.endswith((".jpg", ".bin")))


@pytest.mark.parametrize("args, message", [
    (["--scenes", "0"], "--scenes must be at least 1"),
    (["--samples-per-scene", "0"], "--samples-per-scene must be at least 1"),
    (["--width", "100000"], "out of range"),
    (["--height", "2"], "out of range"),
    (["--sweeps", "11"], "--sweeps must be in 1..10"),
])
def test_bad_arguments_give_one_line_errors(tmp_path, capsys, args, message):
    rc = main(["synth", "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_unwritable_or_foreign_output_folder_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    assert main(["synth", "--out", str(blocker / "sub")]) == 2
    assert "not writable" in capsys.readouterr().err
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    assert main(["synth", "--out", str(foreign)]) == 2
    assert "not a SynthScenes dataset" in capsys.readouterr().err
    assert (foreign / "holiday.jpg").exists()  # nothing of the user's is touched


def test_a_generation_cut_short_is_made_again_not_refused(tmp_path, monkeypatch, capsys):
    """Ctrl-C or a kill before the tables are written leaves samples and the marker, never
    tables; the next generation into that folder replaces it (`bevkd synth`, the bench)."""
    from bevkd.data.synth import writer

    out = tmp_path / "d"

    def cut(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "_write_tables", cut)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(SynthConfig(out=str(out), **TINY, workers=1), progress=False)
    assert writer.is_incomplete(str(out)) and (out / "samples").is_dir()
    assert not (out / "v1.0-synth").exists()
    monkeypatch.undo()
    assert main(["synth", "--out", str(out), "--scenes", "2", "--samples-per-scene", "2",
                 "--width", "64", "--height", "36", "--sweeps", "2", "--workers", "1"]) == 0
    assert not writer.is_incomplete(str(out)) and (out / "v1.0-synth" / "sample.json").is_file()
    assert sorted(os.listdir(out)) == ["maps", "samples", "sweeps", "v1.0-synth"]


def test_splits_put_the_last_scenes_in_val():
    names = [f"scene-{i}" for i in range(10)]
    assert split_scenes(names, 0.2) == {"synth_train": names[:8], "synth_val": names[8:]}
    assert split_scenes(names[:2], 0.2) == {"synth_train": names[:1], "synth_val": names[1:2]}
    assert split_scenes(names[:1], 0.2) == {"synth_train": names[:1], "synth_val": names[:1]}


def test_rig_matches_nuscenes_fields_of_view_and_covers_360_degrees():
    cams, lidar = build_rig(1600, 900)
    assert [c.channel for c in cams] == list(CAMERA_CHANNELS)
    azimuths = np.zeros(360, bool)
    for cam in cams:
        hfov = 2 * np.degrees(np.arctan(cam.width / 2 / cam.pix_T_cam[0, 0]))
        assert hfov == pytest.approx(110.0 if cam.channel == "CAM_BACK" else 70.0)
        forward = cam.ego_T_cam[:3, 2]  # camera z axis in the ego frame
        assert forward[2] == pytest.approx(0.0, abs=1e-9)  # no jitter without an rng
        yaw = np.degrees(np.arctan2(forward[1], forward[0]))
        for a in np.arange(-hfov / 2, hfov / 2, 0.5):
            azimuths[int(np.floor(yaw + a)) % 360] = True
    assert azimuths.all()
    # LIDAR_TOP: x to the right of the car, y forward, 1.84 m high
    assert np.allclose(lidar.ego_T_lidar[:3, :3] @ [0, 1, 0], [1, 0, 0])
    assert lidar.ego_T_lidar[2, 3] == pytest.approx(1.84023)
    assert lidar.noise_clip < SynthConfig(out="x").world.parts_margin


def _box(cx, cy, cz, hx, hy, hz, yaw=0.0, obj=0):
    row = np.zeros(N_PRIM_FIELDS)
    row[:6] = cx, cy, cz, hx, hy, hz
    row[6], row[7] = np.cos(yaw), np.sin(yaw)
    row[8:11] = 0.5
    row[11] = 0.5
    row[13], row[14] = obj, 1
    return row[None]


def _empty_layout():
    from bevkd.data.synth.world import RoadLayout
    return RoadLayout((0.0, 0.0), 0.0, 3.5, 1, 2.5, 3.0, (), 6.0).pack()


def test_camera_ray_hits_a_box_straight_ahead_at_the_hand_computed_depth():
    # camera at the origin, 1 m high, looking along +x: world_R_cam columns = cam x, y, z axes
    R = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    o = np.array([0.0, 0.0, 1.0])
    prims = _box(10.0, 0.0, 1.0, 1.0, 1.0, 1.0)  # front face at x = 9
    W = H = 21
    rgb = np.zeros((H, W, 3), np.float32)
    obj = np.zeros((H, W), np.int32)
    depth = np.zeros((H, W), np.float32)
    total, visible = np.zeros(1, np.int64), np.zeros(1, np.int64)
    light = np.array([0, 0, 1, 0.5, 0.5, 300.0, 1.0])
    render_camera(o, R, 10.0, 10.0, 10.5, 10.5, W, H, prims, _empty_layout(), light,
                  rgb, obj, depth, total, visible)
    assert obj[10, 10] == 0 and depth[10, 10] == pytest.approx(9.0)
    # the box spans +-1 m at 9 m: +-1.11 px around the centre with f = 10
    assert (obj[10] == 0).sum() == 3
    assert obj[0, 0] == -1 and np.isinf(depth[0, 0])  # sky in the corner
    assert total[0] == visible[0] == (obj == 0).sum()  # nothing occludes it
    # bottom rows see the ground: depth = height / tan(angle below the horizon)
    v = H - 1
    assert depth[v, 10] == pytest.approx(1.0 / ((v + 0.5 - 10.5) / 10.0), rel=1e-6)


def test_lidar_on_flat_ground_and_a_wall_returns_hand_computed_ranges():
    R = np.eye(3)
    o = np.array([0.0, 0.0, 2.0])
    elev = np.deg2rad(np.array([-10.0, 0.0]))
    n_az = 360
    prims = _box(20.0, 0.0, 2.0, 0.5, 5.0, 2.0, obj=7)  # wall face at x = 19.5
    zeros = np.zeros((2, n_az))
    pts = np.zeros((2 * n_az, 5))
    obj = np.zeros(2 * n_az, np.int32)
    n = cast_lidar(o, R, elev, n_az, 80.0, prims, _empty_layout(), zeros + 1.0, zeros, zeros,
                   0.0, 0.0, 0.0, 0.0, pts, obj)
    pts, obj = pts[:n], obj[:n]
    ground = obj == -1
    # every -10 deg beam not blocked by the wall hits the ground at range 2 / sin(10 deg)
    r = np.linalg.norm(pts[ground, :3], axis=1)
    assert np.allclose(r, 2.0 / np.sin(np.deg2rad(10.0)))
    assert np.allclose(pts[ground, 2], -2.0)
    # the horizontal beam straight ahead hits the wall at 19.5 m; behind, nothing in range
    ahead = (pts[:, 4] == 1) & (obj == 7)
    assert np.allclose(pts[ahead, 0], 19.5)  # every hit lies on the wall face x = 19.5
    assert ((pts[:, 4] == 1) & (obj == -1)).sum() == 0
    # the wall spans atan(5 / 19.5) = +-14.4 deg: 29 one-degree steps of the horizontal ring
    assert ahead.sum() == 29


def test_world_has_nuscenes_like_class_order():
    counts: dict[str, int] = {}
    for i in range(12):
        w = generate_world(np.random.default_rng([5, i]), 4.5)
        pose, ego = w.poses(0.0), w.ego_pose(0.0)[0]
        for j in w.labeled:
            if np.hypot(*(pose[j, :2] - ego[:2])) < 50 and not w.objects[j].in_rack:
                counts[w.objects[j].kind] = counts.get(w.objects[j].kind, 0) + 1
    order = sorted(counts, key=counts.get, reverse=True)
    assert order[:2] == ["car", "pedestrian"]
    assert counts["barrier"] > counts["bus"] and counts["traffic_cone"] > counts["trailer"]
    assert all(counts.get(k, 0) > 0 for k in ("truck", "bus", "trailer", "construction_vehicle",
                                               "motorcycle", "bicycle", "traffic_cone", "barrier"))
