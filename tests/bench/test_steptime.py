"""The interleaved step timer of the speed benches."""

from __future__ import annotations

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


def test_measure_steps_each_runs_trained_model_on_one_training_batch(trained_run, synth_root,
                                                                     monkeypatch):
    from bevkd.bench import steptime
    from bevkd.engine.run import load_trained

    _, trained = load_trained(trained_run)
    seen = {}

    def spy(models, batch, rounds):
        seen.update(batch=batch, rounds=rounds, training=[m.training for m in models.values()],
                    same=[all(torch.equal(a, b) for a, b in zip(m.state_dict().values(),
                                                                 trained.state_dict().values()))
                          for m in models.values()])
        return median_step_seconds(models, batch, rounds)

    monkeypatch.setattr(steptime, "median_step_seconds", spy)
    out = steptime.measure({"baseline": trained_run, "again": trained_run}, synth_root, rounds=2)
    assert set(out) == {"baseline", "again"} and all(v > 0 for v in out.values())
    # the trained weights, in training mode, one step each on the run's training batch (batch
    # size 3, the three samples of synth_train), with the LiDAR points the teacher reads
    assert seen["same"] == [True, True] and seen["training"] == [True, True]
    assert seen["rounds"] == 2 and seen["batch"].size == 3 and seen["batch"].lidar is not None
    assert seen["batch"].cams is None  # no run reads the cameras
