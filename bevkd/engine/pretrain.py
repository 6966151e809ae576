"""``bevkd pretrain``: the camera student's ResNet pretrained on the training split's images
(see :mod:`bevkd.models.camera.image_pretrain` for why and what)."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch

from ..data.nuscenes import NuScenesDataset
from ..data.transforms import BevAugConfig
from ..errors import BevkdError
from ..progress import progress_bar
from ..models.camera.image_pretrain import ImagePretrainNet, box_class_maps
from ..structures.batch import Batch, collate
from ..structures.geometry import invert_transform
from .config import ExperimentConfig
from .run import _on_gpu, check_accelerator, epoch_loader

STRIDE = 8  # image cells of the pretraining targets (finer than the student's 16: more labels)


def _targets(batch: Batch, feature_size: tuple[int, int]) -> torch.Tensor:
    """``(B·N, h, w)`` class maps of a batch (boxes are in the BEV-augmented ego frame)."""
    cams = batch.cams
    maps = []
    for b in range(batch.size):
        cam_T_box = invert_transform(cams.bda[b].double() @ cams.ego_T_cam[b, 0].double())
        img_T_cam = cams.aug_T_pix[b, 0].double() @ cams.pix_T_cam[b, 0].double()
        maps.append(box_class_maps(batch.targets.boxes[b], batch.targets.labels[b], cam_T_box,
                                   img_T_cam, feature_size, STRIDE))
    return torch.cat(maps)


def _step(net: ImagePretrainNet, batch: Batch) -> tuple[dict[str, torch.Tensor], Any]:
    """Losses and ``(class logits, depth logits, class map)`` of one batch (a CPU batch; the
    images and targets go to the network's device, the targets made on the CPU)."""
    device = next(net.parameters()).device
    images = batch.cams.images[:, 0].flatten(0, 1).to(device, non_blocking=True)
    cls, depth = net(images)
    target = _targets(batch, tuple(cls.shape[-2:])).to(device)
    losses = net.loss(cls, depth, target, batch.targets.depth.flatten(0, 1).to(device))
    return losses, (cls, depth, target)


def pretrain_device(accelerator: str = "auto") -> torch.device:
    """Where ``bevkd pretrain`` trains: ``cpu``, ``gpu`` (one CUDA device: an error where
    there is none) or ``auto`` (the GPU where there is one), as ``bevkd train
    --accelerator``."""
    check_accelerator(accelerator)
    return torch.device("cuda" if _on_gpu(accelerator) else "cpu")


def checkpoint_path(out: str) -> str:
    """Where a pretraining to ``out`` keeps its checkpoint while it runs (removed once the
    weights are written)."""
    return out + ".ckpt"


@contextmanager
def _stop_requests():
    """A list that SIGTERM and the first Ctrl-C append to (in the main thread): the loop then
    saves a checkpoint after its step and stops (a second Ctrl-C interrupts at once). Only
    where this is the main thread (signals are delivered there); elsewhere it stays empty."""
    asked: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield asked
        return

    def ask(signum, frame):  # noqa: ARG001 - signal handler signature
        asked.append(signum)
        if signum == signal.SIGINT:  # the next Ctrl-C is Python's own again
            signal.signal(signal.SIGINT, previous[signal.SIGINT])

    previous = {sig: signal.signal(sig, ask) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield asked
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _settings(cfg: ExperimentConfig, data_root: str, steps: int, lr: float, size: int,
              depth: int, image_size: list[int], device: torch.device) -> dict[str, Any]:
    """What a checkpoint must share with the command that resumes it: on the CPU its thread
    count too, since the weights' last bits depend on it (the record of a pretraining resumed
    on other threads would name only the last count)."""
    return {"steps": steps, "lr": lr, "batch_size": cfg.train.batch_size, "seed": cfg.train.seed,
            "backbone_depth": depth, "image_size": image_size,
            "data": os.path.abspath(data_root), "train_split": cfg.train.train_split,
            "train_samples": size,
            **({"threads": torch.get_num_threads()} if device.type == "cpu" else {})}


def _resumed(ckpt: str, settings: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """The checkpoint ``ckpt`` of a stopped pretraining, refused where there is none, it does
    not read or it is another pretraining's; with ``overwrite``, None then (said): the
    pretraining starts again (`bevkd bench` passes both flags: a pretraining stopped with an
    earlier bench of other settings is made again, not the bench's camera models lost)."""
    def refused(why: str) -> None:
        if not overwrite:
            raise BevkdError(f"--resume: {why}; run the command it was made by, or start "
                             "again (--overwrite)")
        print(f"pretrain: {why}: starting again (--overwrite)", file=sys.stderr, flush=True)

    if not os.path.isfile(ckpt):
        refused(f"there is no checkpoint {ckpt} (a pretraining saves one as it goes and when "
                "it is stopped)")
        return None
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        saved = state["settings"]
    except Exception as e:  # noqa: BLE001 - a damaged file, in words
        refused(f"{ckpt} does not read as a pretraining checkpoint ({type(e).__name__}: {e})")
        return None
    other = [f"{k} {saved.get(k)!r} (now {v!r})" for k, v in settings.items()
             if saved.get(k) != v]
    if other:
        refused(f"{ckpt} is of another pretraining: {'; '.join(other)}")
        return None
    return state


def pretrain_backbone(cfg: ExperimentConfig, data_root: str, out: str, steps: int = 600,
                      lr: float = 2e-3, progress: bool = True,
                      accelerator: str = "auto", overwrite: bool = False,
                      resume: bool = False, save_seconds: float = 120.0) -> dict[str, Any]:
    """Pretrain ``cfg``'s camera backbone for ``steps`` optimiser steps on
    ``accelerator``'s device (:func:`pretrain_device`: the GPU where there is one), in
    float32; writes the ResNet's torchvision-named state dict to ``out`` (on the CPU,
    atomically) and ``out + '.json'`` (settings and held-out accuracies). Returns that JSON's
    content. An existing ``out`` is kept (an error before any step) unless ``overwrite``.

    Resumable: every ``save_seconds`` of training (the first step after), after its last step
    (a stop in the held-out pass resumes to that pass), and when SIGTERM or Ctrl-C stops it
    (after the step under way, then ``KeyboardInterrupt``), it saves its state to
    :func:`checkpoint_path` (network, optimiser, schedule, step, place in the epoch, time so
    far, RNG); ``resume`` continues from there, to the same weights as a pretraining
    never stopped (the data order and augmentations are keyed by seed, epoch and sample).
    Without ``resume``, a checkpoint there is kept (an error) unless ``overwrite``; with both,
    a checkpoint that cannot be resumed (none, damaged, other settings) is started over."""
    if os.path.isdir(out):
        raise BevkdError(f"--out {out} is a folder; give the weights file to write, e.g. "
                         f"{os.path.join(out, 'backbone.pth')}")
    if os.path.exists(out) and not overwrite:
        raise BevkdError(f"--out {out} exists; choose another file or pass --overwrite")
    ckpt = checkpoint_path(out)
    if os.path.exists(ckpt) and not (resume or overwrite):
        raise BevkdError(f"{ckpt} holds a pretraining that was stopped: pass --resume to "
                         "continue it, or --overwrite to start again")
    device = pretrain_device(accelerator)
    args = cfg.model.args
    if cfg.model.type not in ("bevdepth", "fusion"):
        raise BevkdError(f"pretrain needs a camera model config, got {cfg.model.type!r}")
    if steps <= 0:
        raise BevkdError(f"--steps must be positive, got {steps}")
    if not save_seconds > 0:
        raise BevkdError(f"save_seconds must be positive, got {save_seconds}")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    depth_bins = tuple(args.get("depth_bins", (2.0, 58.0, 0.5)))
    net = ImagePretrainNet(args.get("backbone_depth", 50), STRIDE, depth_bins).to(device)
    # image augmentation as the student's; no BEV augmentation (it does not change images)
    data_cfg = replace(cfg.data, depth_stride=STRIDE, use_lidar=False,
                       bev=BevAugConfig(rot_lim=(0.0, 0.0), scale_lim=(1.0, 1.0),
                                        flip_x_ratio=0.0, flip_y_ratio=0.0))
    tcfg = cfg.train
    train_set = NuScenesDataset(data_root, tcfg.version, tcfg.train_split, data_cfg, train=True,
                                seed=tcfg.seed)
    loader = epoch_loader(train_set, cfg, shuffle=True)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    warm = min(50, steps // 10 + 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    settings = _settings(cfg, data_root, steps, lr, len(train_set),
                         args.get("backbone_depth", 50), list(data_cfg.image.final_size),
                         device)
    # step: optimiser steps done; in_epoch: batches of this epoch done; before: seconds of
    # the attempts before this one
    step, epoch, in_epoch, before = 0, 0, 0, 0.0
    state = _resumed(ckpt, settings, overwrite) if resume else None
    if state is not None:
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, epoch, in_epoch = state["step"], state["epoch"], state["in_epoch"]
        before = float(state["seconds"])
        torch.set_rng_state(state["rng"])
        loader.sampler.resume(epoch, in_epoch * tcfg.batch_size)
        print(f"pretrain: resumes {ckpt} at step {step} of {steps}", file=sys.stderr,
              flush=True)
    net.train()
    t0 = saved = time.perf_counter()  # saved: when the last checkpoint was written

    def save() -> None:
        nonlocal saved
        os.makedirs(os.path.dirname(os.path.abspath(ckpt)), exist_ok=True)
        torch.save({"settings": settings, "net": net.state_dict(), "opt": opt.state_dict(),
                    "sched": sched.state_dict(), "step": step, "epoch": epoch,
                    "in_epoch": in_epoch, "seconds": before + time.perf_counter() - t0,
                    "rng": torch.get_rng_state()}, ckpt + ".tmp")
        os.replace(ckpt + ".tmp", ckpt)  # a stop while saving leaves the previous one whole
        saved = time.perf_counter()

    bar = progress_bar(total=steps, initial=step, desc="pretrain backbone",
                       disable=not progress)
    with _stop_requests() as asked:
        while step < steps:
            loader.sampler.set_epoch(epoch)
            for batch in loader:
                losses, _ = _step(net, batch)
                total = sum(losses.values())
                if not torch.isfinite(total):
                    raise BevkdError(f"pretrain: non-finite loss at step {step}: "
                                     + ", ".join(f"{k}={v.item():.4g}"
                                                 for k, v in losses.items()))
                opt.zero_grad()
                total.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
                opt.step()
                sched.step()
                step += 1
                in_epoch += 1
                # the postfix first: a log's line (written by update) shows this step's losses
                bar.set_postfix({k: f"{v.item():.3f}" for k, v in losses.items()},
                                refresh=False)
                bar.update(1)
                if asked and step < steps:
                    save()
                    bar.close()
                    print(f"pretrain: stopped at step {step} of {steps}; {ckpt} holds it: "
                          "the same command with --resume continues it", file=sys.stderr,
                          flush=True)
                    raise KeyboardInterrupt
                if step >= steps:
                    # a stop from here on (the held-out pass) resumes straight to that pass
                    save()
                    break
                if time.perf_counter() - saved >= save_seconds:
                    # by time, not steps: a GPU's steps are cheap to lose, a checkpoint's
                    # write (300 MB with ResNet-50's optimiser state) is not
                    save()
            else:  # the epoch's batches all done (not left by the last step's break)
                epoch, in_epoch = epoch + 1, 0
    bar.close()
    seconds = before + time.perf_counter() - t0
    held_out = evaluate_pretrain(net, data_root, cfg, data_cfg)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    torch.save({k: v.cpu() for k, v in net.backbone.state_dict().items()}, out + ".tmp")
    os.replace(out + ".tmp", out)  # never a half-written weights file under the final name
    info = {"steps": steps, "batch_size": tcfg.batch_size, "lr": lr, "seconds": seconds,
            "backbone_depth": args.get("backbone_depth", 50), "image_size": list(
                data_cfg.image.final_size), "train_split": tcfg.train_split,
            "device": device.type,
            # a CPU pretraining's weights differ in their last bits with the thread count
            "threads": torch.get_num_threads(), **held_out}
    with open(out + ".json", "w") as f:
        json.dump(info, f, indent=1)
    for left in (ckpt, ckpt + ".tmp"):  # the weights are written: nothing left to resume
        if os.path.exists(left):
            os.remove(left)
    return info


@torch.no_grad()
def evaluate_pretrain(net: ImagePretrainNet, data_root: str, cfg: ExperimentConfig,
                      data_cfg) -> dict[str, float]:
    """Held-out (validation split) accuracies: class of object cells, class of background
    cells, depth bin within one bin of the LiDAR's."""
    from ..models.camera.lss import depth_bin_index

    was = net.training
    net.eval()
    ds = NuScenesDataset(data_root, cfg.train.version, cfg.train.val_split, data_cfg)
    hit = {"object": [0, 0], "background": [0, 0], "depth": [0, 0]}
    for i in range(0, len(ds), 4):
        batch = collate([ds[j] for j in range(i, min(len(ds), i + 4))])
        _, (cls, depth, target) = _step(net, batch)
        pred, target = cls.argmax(1).cpu(), target.cpu()
        for key, sel in (("object", target > 0), ("background", target == 0)):
            hit[key][0] += int((pred[sel] == target[sel]).sum())
            hit[key][1] += int(sel.sum())
        idx = depth_bin_index(batch.targets.depth.flatten(0, 1), net.depth_bins)
        idx = idx[..., :depth.shape[-2], :depth.shape[-1]]
        ok = idx >= 0
        hit["depth"][0] += int(((depth.argmax(1).cpu() - idx).abs() <= 1)[ok].sum())
        hit["depth"][1] += int(ok.sum())
    net.train(was)
    return {f"val_{k}_accuracy": (a / b if b else float("nan")) for k, (a, b) in hit.items()}
