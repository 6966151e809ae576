"""Training curves of several runs side by side: each distillation term next to the detection
loss it competes with (the first picture to look at when a method does not help)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..engine.history import loss_terms, training_log, validations  # noqa: E402

# the student's own losses, drawn in greys so the methods' terms stand out in colour
OWN = {"heatmap": ("black", "-"), "bbox": ("black", "--"), "depth": ("0.55", ":")}


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` steps (shorter at the start): (N,) -> (N,)."""
    if window <= 1 or values.size == 0:
        return values.astype(np.float64)
    c = np.cumsum(np.insert(values.astype(np.float64), 0, 0.0))
    n = np.minimum(np.arange(1, values.size + 1), window)
    return (c[1:] - c[np.arange(1, values.size + 1) - n]) / n


def run_panel(run: str) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str | None]:
    """What ``loss_curves`` draws for one run folder: its ``loss_terms`` over every attempt,
    and a subtitle with its last validation's mAP / NDS (None before the first one)."""
    rows = training_log(run)
    last = [v for _, v in validations(rows) if "val/mAP" in v]
    subtitle = (f"final val mAP {100 * last[-1]['val/mAP']:.2f} / "
                f"NDS {100 * last[-1]['val/NDS']:.2f}") if last else None
    return loss_terms(rows), subtitle


def loss_curves(runs: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], out: str,
                title: str, subtitles: dict[str, str] | None = None, window: int = 20) -> str:
    """One panel per run (name -> ``{term: (steps, values)}``, as
    ``bevkd.engine.history.loss_terms`` gives): the student's heatmap, bbox and depth losses
    in greys and every ``distill/...`` term in colour, each a trailing ``window``-step mean,
    on a shared log scale. ``subtitles`` (name -> text, e.g. the run's mAP / NDS) go under
    each panel's name. The total ``loss`` is left out (it is the sum of the others), and so is
    a term that is zero at every step (switched off by its weight). A method's term is
    labelled by its name (``sim``), or with its method (``asd/sim``) in a run that combines
    methods. Returns ``out``."""
    if not runs:
        raise ValueError("loss_curves: no runs to draw")
    n = len(runs)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.8 * rows), dpi=110,
                             squeeze=False, sharey=True)
    palette = plt.get_cmap("tab10")
    for ax, (name, terms) in zip(axes.flat, runs.items()):
        # a term that is zero throughout was switched off by its weight: nothing to draw (and
        # a log axis cannot show it)
        drawn = {t: sv for t, sv in terms.items()
                 if t != "loss" and sv[0].size and np.any(sv[1] != 0)}
        methods = {t.split("/")[1] for t in drawn
                   if t.startswith("distill/") and t.count("/") >= 2}
        k = 0
        for term, (steps, values) in drawn.items():
            if term in OWN:
                color, style = OWN[term]
                label = term
            else:
                color, style = palette(k % 10), "-"
                # "sim", or "asd/sim" in a run that combines methods
                label = term.removeprefix("distill/")
                if len(methods) == 1 and "/" in label:
                    label = label.split("/", 1)[1]
                k += 1
            v = np.clip(smooth(values, window), 1e-6, None)
            ax.plot(steps, v, style, color=color, lw=1.3, label=label)
        ax.set_yscale("log")
        ax.set_title(name + (f"\n{subtitles[name]}" if subtitles and name in subtitles else ""),
                     fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3, which="both")
        if not drawn:  # a run with no training log (or all zero): say so, not an empty legend
            ax.text(0.5, 0.5, "no logged losses", ha="center", va="center",
                    transform=ax.transAxes, color="0.5")
            continue
        # below the panel: the curves fill the axes at every height
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3,
                  frameon=False)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    for r in range(rows):
        axes[r, 0].set_ylabel("weighted loss (log)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
