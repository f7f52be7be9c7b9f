"""Time one network pass per image against the rows per call, for the families that batch their own
inference calls: the diffusion UNet (fp32, as the bound runs, and bf16, as classify and sampling run),
the VAE decoder and the PixelCNN.

    OMP_NUM_THREADS=1 python benchmarks/probes/inference_rows.py [--images 1000] [--rounds 2] [--out results/inference_rows.json]

Fresh networks of the CPU presets (costs do not depend on the weights), one thread as the
benchmark's workers run, inference mode; the minimum over rounds. On a CPU, a call's activations
(rows x channels x 28 x 28 floats) fall out of cache as the rows grow: what sets CPU_ROWS in
models/diffusion/model.py, DECODE_ROWS in models/vae.py and CHUNK in models/pixelcnn.py.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dgbench.runtime import cpu_model, fast_bf16
from models.diffusion import DiffusionModel
from models.pixelcnn import ConditionalPixelCNN
from models.vae import ConditionalVAE

ROWS = (8192, 2048, 1000, 512, 256, 128, 64, 32)


def ms_per_row(call: Callable[[int, int], object], total: int, rows: int, bf16: bool = False) -> float:
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        call(0, min(rows, 8))  # warm-up
        start = time.perf_counter()
        for i in range(0, total, rows):
            call(i, min(rows, total - i))
        return (time.perf_counter() - start) / total * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--images", type=int, default=2048, help="rows timed per setting (x4 for the cheap VAE decoder)"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results/inference_rows.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    n = args.images
    unet = DiffusionModel(channels=(16, 32, 64), dropout=0.0).ema.averaged.eval()  # diffusion_cpu's UNet
    vae = ConditionalVAE(width=32, latent_dim=16).eval()  # vae_cpu
    pixelcnn = ConditionalPixelCNN(width=16, dilations=[1, 1, 2, 1]).eval()  # the hour's PixelCNN
    x, t, y = torch.randn(n, 1, 28, 28), torch.randint(0, 1000, (n,)), torch.randint(0, 11, (n,))
    z, b = torch.randn(4 * n, 16), (torch.rand(n, 1, 28, 28) > 0.5).float()
    y4 = torch.randint(0, 10, (4 * n,))
    calls = {
        "diffusion UNet, fp32": (lambda i, r: unet(x[i : i + r], t[i : i + r], y[i : i + r]), False, n),
        "diffusion UNet, bf16": (lambda i, r: unet(x[i : i + r], t[i : i + r], y[i : i + r]), True, n),
        "VAE decoder, fp32": (lambda i, r: vae.decode(z[i : i + r], y4[i : i + r]), False, 4 * n),
        "PixelCNN, fp32": (lambda i, r: pixelcnn.logits(b[i : i + r], y[i : i + r] % 10), False, n),
    }
    start = time.perf_counter()
    table: dict[str, dict[int, float]] = {name: {} for name in calls}
    for _ in range(args.rounds):
        for name, (call, bf16, total) in calls.items():
            if bf16 and not fast_bf16(torch.device("cpu")):
                continue
            for rows in (r for r in ROWS if r <= total):
                ms = ms_per_row(call, total, rows, bf16)
                table[name][rows] = min(ms, table[name].get(rows, float("inf")))
    lines = [
        f"{cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), {n} rows per setting, "
        f"best of {args.rounds}; ms per row (one image, one class or one sample; blank: more rows than timed)",
        "",
        "| network | " + " | ".join(f"{r} rows" for r in ROWS) + " |",
        "|---|" + "---|" * len(ROWS),
    ]
    for name, row in table.items():
        if row:
            best = min(row.values())
            cells = [f"**{row[r]:.3f}**" if row.get(r) == best else f"{row[r]:.3f}" if r in row else "" for r in ROWS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    record = {"cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(), "rows_timed": n}
    record |= {"wall_s": round(time.perf_counter() - start, 1), "ms_per_row": table}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"written to {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
