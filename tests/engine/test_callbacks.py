"""The training callbacks' checkpoint contract (their behaviour in a training: test_resume.py,
test_run.py)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from bevkd.engine.callbacks import Timing, _validation_follows


def test_timing_reads_the_totals_of_checkpoints_written_before_it_moved(tmp_path):
    """Lightning files a callback's state by ``state_key``; runs trained while the class was
    run.py's ``_Timing`` (the committed bench's) must keep their time and peak on --resume."""
    old = {"seconds": 100.0, "steps": 10, "timed": 7, "timed_seconds": 70.0,
           "all_seconds": 95.0, "peak_rss_mb": 2048.0, "peak_cuda_mb": 0.0}
    checkpoint = {"callbacks": {"_Timing": old}}
    timing = Timing(str(tmp_path / "timing.json"))
    timing.load_state_dict(checkpoint["callbacks"][timing.state_key])
    totals = timing.state_dict()
    assert totals["seconds"] == 100.0 and totals["steps"] == 10 and totals["timed"] == 7
    assert totals["peak_rss_mb"] >= 2048.0


class _Tiny(L.LightningModule):
    """Three training batches, one validation batch."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch).sum()

    def validation_step(self, batch, batch_idx):
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.ones(3, 2), batch_size=1)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(torch.ones(1, 2), batch_size=1)


@pytest.mark.parametrize("every,validate", [(1, True), (2, True), (3, True), (None, True),
                                            (1, False)])
def test_validation_follows_the_steps_lightning_validates_after(tmp_path, every, validate):
    """At every training step, whether an epoch-end validation follows, as our public-attribute
    test says and as Lightning's private one does (with the step being its epoch's last), and
    as the trainer then does."""
    seen: list[tuple[int, bool, bool]] = []
    validated: list[int] = []

    class Probe(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            loop = trainer.fit_loop.epoch_loop
            last = loop.batch_progress.current.processed >= trainer.num_training_batches
            seen.append((trainer.global_step, _validation_follows(trainer),
                         bool(last and loop._should_check_val_epoch())))

        def on_validation_start(self, trainer, pl_module):
            if not trainer.sanity_checking:
                validated.append(trainer.global_step)

    kwargs = {"check_val_every_n_epoch": every} if every \
        else {"check_val_every_n_epoch": None, "val_check_interval": 3}
    if not validate:  # validation switched off: enable_validation is False
        kwargs["limit_val_batches"] = 0
    trainer = L.Trainer(max_epochs=4, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, callbacks=[Probe()], default_root_dir=tmp_path,
                        **kwargs)
    trainer.fit(_Tiny())
    assert len(seen) == 12
    assert [ours for _, ours, _ in seen] == [lightning for _, _, lightning in seen]
    assert [step for step, ours, _ in seen if ours] == validated
    expected = [3 * e for e in range(1, 5) if every is None or e % every == 0] if validate \
        else []
    assert validated == expected
