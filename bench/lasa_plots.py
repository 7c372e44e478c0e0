"""Figures for ``kinebridge eval lasa``: generated trajectories per method (VL-MP Fig. 11 style) and
a per-shape c_s summary."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LABELS = {"kmp": "KMP", "tp-gmm": "TP-GMM", "tp-gmr": "TP-GMR", "lfe-kmp": "LFE-KMP (VL-MP)",
          "lfe-kmp-gmr": "LFE-KMP, GMR resampling", "lfe-kmp-both": "LFE-KMP, both ends in every frame"}


SHOWN_CASES = ("translate +x", "end -y", "random 0", "random 1", "random 3")


def figure_cases(paths, record, cfg, out_path):
    """A grid like VL-MP Fig. 11: one column per method, one row per shown case; demonstrations in
    grey, the oracle dashed, the generated path solid, start '+' and end '*' targets."""
    methods = list(cfg.methods)
    cases = [c for c in SHOWN_CASES if c in paths["cases"]] or [c for c in paths["cases"] if c != "identity"][:4]
    fig, axes = plt.subplots(len(cases), len(methods), figsize=(3.0 * len(methods), 2.9 * len(cases)),
                             squeeze=False, sharex=True, sharey=True)
    for row, name in enumerate(cases):
        c = paths["cases"][name]
        for col, method in enumerate(methods):
            ax = axes[row][col]
            for demo in paths["demos"]:
                ax.plot(demo[:, 0], demo[:, 1], color="0.85", lw=0.8, zorder=0)
            ax.plot(c["oracle"][:, 0], c["oracle"][:, 1], "--", color="0.3", lw=1.0, label="oracle")
            ax.plot(c[method][:, 0], c[method][:, 1], color="C0" if method.startswith("lfe") else "C3", lw=1.6,
                    label="generated")
            ax.plot(*c["start"], "+", color="k", ms=10, mew=2)
            ax.plot(*c["end"], "*", color="k", ms=9)
            row_metrics = next(r for r in record["methods"][method]["cases"] if r["case"] == name)
            ax.text(0.02, 0.02, f"c_s {100 * row_metrics['c_s']:.1f} %\n|e_end| {row_metrics['end_error']:.2g} mm",
                    transform=ax.transAxes, fontsize=7, va="bottom")
            ax.set_aspect("equal")
            ax.grid(alpha=0.25)
            if row == 0:
                ax.set_title(LABELS.get(method, method), fontsize=9)
            if col == 0:
                ax.set_ylabel(f"{name}\ny [mm]", fontsize=8)
            if row == len(cases) - 1:
                ax.set_xlabel("x [mm]", fontsize=8)
    fig.suptitle(f"LASA {record['shape']}: generalisation to new start (+) and end (*) task parameters "
                 "(grey: demonstrations, dashed: oracle similarity transform)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)


def figure_shapes(records, cfg, out_path):
    """Mean c_s (vs oracle) over the perturbed cases, per shape and method."""
    methods = list(cfg.methods)
    names = [r["shape"] for r in records]
    x = np.arange(len(names))
    w = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(names) * len(methods) / 2), 4.5))
    for i, m in enumerate(methods):
        vals = [100 * r["methods"][m]["perturbed"]["c_s"] for r in records]
        ax.bar(x + (i - (len(methods) - 1) / 2) * w, vals, w, label=LABELS.get(m, m))
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("mean c_s vs oracle [%]")
    lo = min(100 * r["methods"][m]["perturbed"]["c_s"] for r in records for m in methods)
    ax.set_ylim(max(0, lo - 5), 100)
    ax.legend(fontsize=8, ncol=len(methods))
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("LASA shape preservation over perturbed start/end cases")
    fig.tight_layout()
    fig.savefig(out_path, dpi=130)
    plt.close(fig)
