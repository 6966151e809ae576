"""The image backbone: frozen stages, BatchNorm kept in eval mode (norm_eval), weight files."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bevkd.errors import BevkdError
from bevkd.models.backbones.resnet import ResNet


def _norms(net: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.mark.parametrize("norm_eval", [True, False])
def test_norm_eval_holds_from_construction_without_a_train_call(norm_eval):
    """Lightning does not call train() before fitting: a norm_eval backbone must keep its
    statistics whether or not anyone does."""
    torch.manual_seed(0)
    net = ResNet(18, frozen_stages=4, norm_eval=norm_eval)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert all(m.training != norm_eval for m in _norms(net))
    net(torch.randn(2, 3, 64, 64))
    moved = [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]
    if norm_eval:
        assert moved == []
    else:  # the batch's statistics go into every BatchNorm's running averages, nothing else
        assert moved and all(k.endswith(("running_mean", "running_var", "num_batches_tracked"))
                             for k in moved)
        assert len(moved) == 3 * len(_norms(net))
    # train() / eval() from a parent keep the rule
    parent = nn.Sequential(net)
    parent.eval()
    assert not any(m.training for m in _norms(net))
    parent.train()
    assert all(m.training != norm_eval for m in _norms(net)) and net.training
    # converted for DDP, the rule still holds on the next train()
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    synced.train()
    norms = [m for m in synced.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert len(norms) == 20 and all(m.training != norm_eval for m in norms)


def test_frozen_stages_freeze_the_stem_and_the_first_k_layers():
    net = ResNet(18, frozen_stages=2)
    frozen = {n.split(".")[0] for n, p in net.named_parameters() if not p.requires_grad}
    trained = {n.split(".")[0] for n, p in net.named_parameters() if p.requires_grad}
    assert frozen == {"conv1", "bn1", "layer1", "layer2"} and trained == {"layer3", "layer4"}
    assert all(p.requires_grad for p in ResNet(18).parameters())  # -1: none


def test_weights_of_another_depth_are_refused_by_name(tmp_path):
    path = tmp_path / "r34.pth"
    torch.save(ResNet(34).state_dict(), path)
    # every tensor of the 18 is in the 34's file: the extra blocks give it away
    with pytest.raises(BevkdError, match=r"do not fit this ResNet-18: unexpected layer1\.2\."):
        ResNet(18, weights=str(path))
    with pytest.raises(BevkdError, match=r"do not fit this ResNet-34: missing layer1\.2\."):
        torch.save(ResNet(18).state_dict(), path)
        ResNet(34, weights=str(path))
    path50 = tmp_path / "r50.pth"
    torch.save(ResNet(50).state_dict(), path50)
    with pytest.raises(BevkdError, match=r"ResNet-18: layer1\.0\.conv1\.weight \(64, 64, 1, 1\) "
                                         r"vs \(64, 64, 3, 3\)"):
        ResNet(18, weights=str(path50))
    # a torchvision ImageNet file carries the classifier: ignored
    state = ResNet(18).state_dict()
    torch.save({**state, "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}, path)
    assert torch.equal(ResNet(18, weights=str(path)).conv1.weight, state["conv1.weight"])
    torch.save([torch.zeros(1)], path)
    with pytest.raises(BevkdError, match="not a state dict of tensors \\(a list\\)"):
        ResNet(18, weights=str(path))
    torch.save({"epoch": 3, "state_dict": ResNet(18).state_dict()}, path)  # a whole checkpoint
    with pytest.raises(BevkdError, match="not a state dict of tensors \\(a dict\\)"):
        ResNet(18, weights=str(path))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(BevkdError, match="cannot read backbone weights"):
        ResNet(18, weights=str(tmp_path / "junk.pth"))


def test_frozen_stages_without_weights_are_named(tmp_path):
    """A student whose frozen ResNet stages would train from the random init is named (train
    warns); weights, or nothing frozen, clear it."""
    from bevkd.models.backbones.resnet import random_frozen_stages

    holder = nn.Module()
    holder.backbone = ResNet(18, frozen_stages=4)
    holder.other = ResNet(18)  # nothing frozen: it learns
    assert random_frozen_stages(holder) == ["backbone"]
    assert random_frozen_stages(ResNet(18, frozen_stages=0)) == ["ResNet"]
    path = tmp_path / "r18.pth"
    torch.save(ResNet(18).state_dict(), path)
    assert random_frozen_stages(ResNet(18, frozen_stages=4, weights=str(path))) == []
