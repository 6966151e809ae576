"""Camera-aware DepthNet: the 27 parameters, output shapes, gates that learn and listen."""

from __future__ import annotations

import pytest
import torch

from bevkd.models.camera.depthnet import NUM_CAMERA_PARAMS, DepthNet, camera_params


def _cams(B=2, N=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    ego_T_cam = torch.eye(4).repeat(B, N, 1, 1)
    ego_T_cam[..., :3, :] = torch.randn(B, N, 3, 4, generator=g)
    K = torch.tensor([[500.0, 0, 350], [0, 510, 130], [0, 0, 1]]).repeat(B, N, 1, 1)
    K[..., 0, 0] += 10 * torch.arange(N)
    aug = torch.eye(3).repeat(B, N, 1, 1)
    aug[..., :2, :] = torch.randn(B, N, 2, 3, generator=g)
    bda = torch.eye(4).repeat(B, 1, 1)
    bda[:, :3, :3] = torch.randn(B, 3, 3, generator=g)
    return ego_T_cam, K, aug, bda


def _net(**kw):
    torch.manual_seed(0)
    return DepthNet(in_channels=16, mid_channels=8, context_channels=6, depth_channels=12,
                    aspp_dilations=(1, 2, 3), **kw)


def test_camera_params_layout():
    ego_T_cam, K, aug, bda = _cams()
    p = camera_params(ego_T_cam, K, aug, bda)
    assert p.shape == (2, 3, NUM_CAMERA_PARAMS) == (2, 3, 27)
    b, n = 1, 2
    expect = torch.cat([
        torch.stack([K[b, n, 0, 0], K[b, n, 1, 1], K[b, n, 0, 2], K[b, n, 1, 2]]),
        torch.stack([aug[b, n, 0, 0], aug[b, n, 0, 1], aug[b, n, 0, 2],
                     aug[b, n, 1, 0], aug[b, n, 1, 1], aug[b, n, 1, 2]]),
        torch.stack([bda[b, 0, 0], bda[b, 0, 1], bda[b, 1, 0], bda[b, 1, 1], bda[b, 2, 2]]),
        ego_T_cam[b, n, :3, :].reshape(12)])
    torch.testing.assert_close(p[b, n], expect)
    # extra leading dims (frames) share the sample's bda
    p5 = camera_params(ego_T_cam[:, None].expand(2, 4, 3, 4, 4), K[:, None].expand(2, 4, 3, 3, 3),
                       aug[:, None].expand(2, 4, 3, 3, 3), bda)
    assert p5.shape == (2, 4, 3, 27)
    torch.testing.assert_close(p5[:, 2], p)


def test_output_shapes():
    net = _net()
    feats = torch.randn(6, 16, 4, 11)
    depth, context = net(feats, camera_params(*_cams()))
    assert depth.shape == (6, 12, 4, 11) and context.shape == (6, 6, 4, 11)
    depth2, _ = net(feats, camera_params(*_cams()).view(6, 27))
    assert depth2.shape == depth.shape
    with pytest.raises(ValueError, match="camera parameter rows"):
        net(feats[:5], camera_params(*_cams()))


def test_gradients_reach_the_camera_gates():
    net = _net()
    net.train()
    depth, context = net(torch.randn(6, 16, 4, 11), camera_params(*_cams()))
    (depth.square().mean() + context.square().mean()).backward()
    for gate in (net.depth_gate, net.context_gate):
        for name, prm in gate.named_parameters():
            assert prm.grad is not None and prm.grad.abs().sum() > 0, name
    assert net.reduce_conv[0].weight.grad.abs().sum() > 0


def test_camera_params_change_the_outputs():
    net = _net().eval()
    feats = torch.randn(6, 16, 4, 11)
    params = camera_params(*_cams())
    with torch.no_grad():
        d1, c1 = net(feats, params)
        d2, c2 = net(feats, params * 1.5)
        d3, c3 = net(feats, params)
    assert not torch.allclose(d1, d2) and not torch.allclose(c1, c2)
    torch.testing.assert_close(d1, d3)
    torch.testing.assert_close(c1, c3)
