"""The interleaved step timer of the speed benches."""

from __future__ import annotations

import pytest
import torch

from bevkd.bench.steptime import median_step_seconds


class _Toy(torch.nn.Module):
    """A model with the detector's forward / loss contract; ``frozen`` is not trained."""

    def __init__(self, width: int):
        super().__init__()
        self.layer = torch.nn.Linear(4, width)
        self.frozen = torch.nn.Linear(4, 1).requires_grad_(False)
        self.calls = 0

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.layer(batch) + self.frozen(batch)

    def loss(self, out: torch.Tensor, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"a": out.pow(2).mean(), "b": out.abs().mean()}


def test_every_model_takes_a_warm_up_and_one_step_per_round():
    torch.manual_seed(0)
    models = {"small": _Toy(2), ("big", 1): _Toy(256)}
    before = {k: (m.layer.weight.clone(), m.frozen.weight.clone()) for k, m in models.items()}
    med = median_step_seconds(models, torch.randn(8, 4), rounds=3)
    assert set(med) == {"small", ("big", 1)} and all(v > 0 for v in med.values())
    for key, model in models.items():
        assert model.calls == 4  # warm-up + 3 rounds
        assert not torch.equal(model.layer.weight, before[key][0])  # the optimiser stepped
        assert torch.equal(model.frozen.weight, before[key][1])  # frozen weights untouched


class _Sleepy(_Toy):
    """A toy whose forward pass waits 50 ms without computing: the time another process
    holds the core looks so to the step."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        import time

        time.sleep(0.05)
        return super().forward(batch)


def test_on_one_cpu_thread_a_step_is_timed_in_the_threads_cpu_time():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        (cpu,) = median_step_seconds({"m": _Sleepy(2)}, torch.randn(8, 4), rounds=2).values()
        torch.set_num_threads(2)  # the thread's clock would miss the other threads: wall time
        (wall,) = median_step_seconds({"m": _Sleepy(2)}, torch.randn(8, 4), rounds=2).values()
    finally:
        torch.set_num_threads(threads)
    assert cpu < 0.025 and wall >= 0.05


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed", "16", "32-true"])
def test_a_step_runs_in_the_precision_its_run_trained_in(precision):
    """Each model steps under its run's autocast (16-mixed with a gradient scaler, as
    Lightning trains it); the CPU stands in for the GPU here, where the bench uses it."""
    seen = {}

    class _Spy(_Toy):
        def forward(self, batch):
            seen.setdefault("dtypes", set()).add(torch.get_autocast_dtype("cpu")
                                                 if torch.is_autocast_enabled("cpu") else None)
            return super().forward(batch)

    torch.manual_seed(0)
    models = {"a": _Spy(8)}
    before = models["a"].layer.weight.clone()
    med = median_step_seconds(models, torch.randn(8, 4), rounds=2, device="cpu",
                              precisions={"a": precision})
    assert med["a"] > 0 and not torch.equal(models["a"].layer.weight, before)
    # warm-up: three steps where a gradient scaler finds its scale, else one; then 2 rounds
    assert models["a"].calls == (5 if precision in ("16-mixed", "16") else 3)
    expected = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16, "16": torch.float16,
                "32-true": None}[precision]
    assert seen["dtypes"] == {expected}


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="64-true"):
        median_step_seconds({"a": _Toy(2)}, torch.randn(8, 4), rounds=1,
                            precisions={"a": "64-true"})


def test_measure_steps_each_runs_trained_model_on_one_training_batch(trained_run, synth_root,
                                                                     monkeypatch):
    from bevkd.bench import steptime
    from bevkd.engine.run import load_trained

    _, trained = load_trained(trained_run)
    seen = {}

    def spy(models, batch, rounds, device, precisions):
        seen.update(batch=batch, rounds=rounds, training=[m.training for m in models.values()],
                    same=[all(torch.equal(a, b) for a, b in zip(m.state_dict().values(),
                                                                 trained.state_dict().values()))
                          for m in models.values()])
        seen.update(device=device, precisions=precisions)
        return median_step_seconds(models, batch, rounds, device, precisions)

    monkeypatch.setattr(steptime, "median_step_seconds", spy)
    out = steptime.measure({"baseline": trained_run, "again": trained_run}, synth_root, rounds=2,
                           device="cpu")
    assert set(out) == {"baseline", "again"} and all(v > 0 for v in out.values())
    # the trained weights, in training mode, one step each on the run's training batch (batch
    # size 3, the three samples of synth_train), with the LiDAR points the teacher reads
    assert seen["same"] == [True, True] and seen["training"] == [True, True]
    assert seen["rounds"] == 2 and seen["batch"].size == 3 and seen["batch"].lidar is not None
    assert seen["batch"].cams is None  # no run reads the cameras
    assert seen["device"] == torch.device("cpu") and seen["precisions"] == {}  # fp32 on a CPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_measure_steps_on_the_gpu_in_the_runs_precision(trained_run, synth_root):
    from bevkd.bench import steptime

    out = steptime.measure({"baseline": trained_run}, synth_root, rounds=2, device="cuda")
    assert set(out) == {"baseline"} and out["baseline"] > 0
