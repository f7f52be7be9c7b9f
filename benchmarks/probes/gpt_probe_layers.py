"""Linear probes on every block of a GPT pretrained without labels: where are its best features?

    python benchmarks/probes/gpt_probe_layers.py RUN --labels 100 1000 10000 --out results/cpu/gpt_probe_layers

ImageGPT (Chen et al. 2020, Fig. 3) finds linear-probe accuracy peaks in the middle layers of a
generatively trained transformer. This probe asks the same of RUN (a gpt or gpt_finetuned checkpoint;
its network is read after the "no class" start token): for each block l, the features f_l(x) of
models/gpt_finetuned.py (block l's output averaged over positions, layer-normalised), a multinomial
logistic regression (scikit-learn, L2, C = 1, fixed a priori) fitted on n stratified labelled training
images per seed, and its accuracy on the test images. The layer a user would pick is the one with the
best 5-fold cross-validated accuracy on the same n labels (never on test); the test accuracy of every
layer is shown beside it, as a description. Writes probe_layers.json, .md and .png to --out.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from dgbench.binarize import fixed_binarization
from dgbench.checkpoint import load_model
from dgbench.data import stratified_subset, to_float
from dgbench.datasets import default_data_root, load_split
from dgbench.runtime import environment, write_json
from models.gpt_finetuned import pooled, unconditional_pass


@torch.inference_mode()
def layer_features(net: torch.nn.Module, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """(depth, N, width): f_l for every block l of ``net``, on the fixed binarization (seed 0)."""
    out = []
    for x in images.split(batch):
        _, states = unconditional_pass(net, fixed_binarization(x, 0))
        out.append(torch.stack([pooled(h) for h in states]))
    return torch.cat(out, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--labels", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--test", type=int, default=10000, help="test images (the first ones)")
    parser.add_argument("--out", type=Path, default=Path("results/cpu/gpt_probe_layers"))
    args = parser.parse_args()
    started = time.perf_counter()
    net = load_model(args.run).net.eval().float()
    (train_x, train_y), (test_x, test_y) = (load_split("mnist", default_data_root(), t, False) for t in (True, False))
    test_f = layer_features(net, to_float(test_x[: args.test]))
    rows = []
    for n in args.labels:
        for seed in args.seeds:
            index = stratified_subset(train_y, n, torch.Generator().manual_seed(seed))
            train_f = layer_features(net, to_float(train_x[index]))
            for layer in range(len(train_f)):
                probe = LogisticRegression(C=1.0, max_iter=2000)
                folds = min(5, n // 10)
                cv = cross_val_score(probe, train_f[layer].numpy(), train_y[index].numpy(), cv=folds).mean()
                probe.fit(train_f[layer].numpy(), train_y[index].numpy())
                test = probe.score(test_f[layer].numpy(), test_y[: args.test].numpy())
                rows.append({"labels": n, "seed": seed, "layer": layer + 1, "cv_acc": cv, "test_acc": test})
                print(f"n={n} seed={seed} block {layer + 1}: cv {cv:.4f}, test {test:.4f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"run": str(args.run), "rows": rows, "wall_s": round(time.perf_counter() - started, 1), **environment()}
    write_json(args.out / "probe_layers.json", record)
    write_report(rows, args, record)


def write_report(rows: list[dict], args: argparse.Namespace, record: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def mean(n: int, layer: int, key: str) -> float:
        values = [r[key] for r in rows if r["labels"] == n and r["layer"] == layer]
        return sum(values) / len(values)

    layers = sorted({r["layer"] for r in rows})
    lines = [
        "# Linear probe accuracy by block (mean over seeds)",
        "",
        f"`python benchmarks/probes/gpt_probe_layers.py {args.run} --labels {' '.join(map(str, args.labels))}`; "
        f"{record['device']}, torch {record['torch_version']}, {record['wall_s']:.0f} s. Test accuracy on the first "
        f"{args.test} test images; the chosen block (*) is the best 5-fold cross-validated accuracy on the n labels.",
        "",
        "| labels | " + " | ".join(f"block {layer}" for layer in layers) + " |",
        "|---|" + "---|" * len(layers),
    ]
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for n in args.labels:
        chosen = max(layers, key=lambda layer: mean(n, layer, "cv_acc"))
        cells = [f"{100 * mean(n, layer, 'test_acc'):.1f}{'*' if layer == chosen else ''}" for layer in layers]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
        axis.plot(layers, [100 * mean(n, layer, "test_acc") for layer in layers], marker="o", label=f"{n} labels")
    axis.set(xlabel="block", ylabel="test accuracy (%)", xticks=layers, title="linear probe by block")
    axis.legend()
    figure.tight_layout()
    figure.savefig(args.out / "probe_layers.png", dpi=120)
    (args.out / "probe_layers.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
