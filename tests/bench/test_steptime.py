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
