"""A small SynthScenes dataset shared by the tests (generated once per session)."""

from __future__ import annotations

import pytest

from bevkd.blas import pin_openblas

# before torch imports numpy: numpy's BLAS kernels by instruction set, as every `bevkd`
# command runs them (bevkd.blas), also in the trainings the tests start as processes
pin_openblas()

import torch  # noqa: E402
from nuscenes import NuScenes  # noqa: E402

from bevkd.data.synth.generator import SynthConfig  # noqa: E402
from bevkd.data.synth.writer import generate_dataset  # noqa: E402

# Two scenes: synth_train = scene-0000, synth_val = scene-0001. Low resolution keeps it fast;
# debug maps give the renderer's per-pixel / per-point object ids for the label tests.
SMALL = dict(scenes=2, samples_per_scene=3, seed=0, width=320, height=180, workers=2,
             debug_maps=True)


@pytest.fixture(autouse=True)
def _one_thread_seeded():
    """Every test single-threaded and seeded. CI has 2 shared cores: intra-op threads only
    fight each other on the tests' tiny convolutions (tens of times slower under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def synth_settings() -> dict:
    return dict(SMALL)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(SynthConfig(out=str(root), **SMALL), progress=False)
    return str(root)


@pytest.fixture(scope="session")
def nusc(synth_root: str) -> NuScenes:
    return NuScenes(version="v1.0-synth", dataroot=synth_root, verbose=False)


# tiny preset, shrunk: a 16 x 16 grid, one sweep, narrow layers, two epochs of one step each
TINY_TRAIN_SETTINGS = ("--preset", "tiny", "--set", "grid.cell=6.4", "--set", "data.lidar_sweeps=1",
                       "--set", "model.args.head_channels=8",
                       "--set", "model.args.trunk_channels=[8, 16]",
                       "--set", "model.args.neck_channels=8", "--set", "train.epochs=2",
                       "--set", "train.batch_size=3", "--set", "train.num_workers=0")


@pytest.fixture(scope="session")
def tiny_train_settings() -> list[str]:
    """``bevkd train`` arguments of :func:`trained_run`."""
    return list(TINY_TRAIN_SETTINGS)


@pytest.fixture(scope="session")
def trained_run(synth_root: str, tmp_path_factory) -> str:
    """A finished ``bevkd train`` run of the LiDAR teacher (``configs/teacher/pillars.yaml``)
    on :func:`synth_root` with :data:`TINY_TRAIN_SETTINGS`. Tests only read it or write
    beside its own results."""
    from bevkd.cli import main

    run = str(tmp_path_factory.mktemp("runs") / "pillars")
    assert main(["train", "configs/teacher/pillars.yaml", "--data", synth_root, "--out", run,
                 *TINY_TRAIN_SETTINGS]) == 0
    return run
