"""Data-parallel scaling: `raysitter train` with 1 and with 2 DDP workers (Ray Train, gloo on
CPU, NCCL on GPUs) on the same global batch, model, data and number of epochs.

Each worker gets resources_per_worker (1 CPU, or 1 GPU with --gpu) and one torch thread per CPU,
so the 2-worker run uses twice the resources; ideal scaling is 2×. On a 2-core machine the
second worker competes with Ray's own processes and the all-reduce, so expect less.

    python bench/scaling.py [--epochs 5] [--samples 8000] [--batch-size 256] [--gpu]

Last line: `ratio: X` = 2-worker throughput ÷ 1-worker throughput (steady-state epochs).
"""
from __future__ import annotations

import statistics

from _common import arguments, cli_run, table


def main() -> None:
    args = arguments(__doc__, ("gpu",), epochs=5, samples=8000, batch_size=256)
    n_train = int(args.samples * 0.7)
    base = ["data=synthetic", f"data.num_samples={args.samples}", "model=convnet", "model.channels=[16,32]", "model.hidden=[64]",
            f"trainer.epochs={args.epochs}", f"trainer.batch_size={args.batch_size}", "diagnostics=off", "tracking.log_model=false"]
    base += ["trainer=gpu"] if args.gpu else []
    rows = []
    for workers in (1, 2):
        times, startup = cli_run([*base, f"trainer.num_workers={workers}"])
        epoch = statistics.median(times[:-1] or times)
        rows.append({"workers": workers, "global batch": args.batch_size, "epoch s": epoch, "images/s": n_train / epoch, "startup s": startup})
    for r in rows:
        r["speed-up"] = rows[0]["epoch s"] / r["epoch s"]
    print(table(rows))
    print(f"ratio: {rows[0]['epoch s'] / rows[1]['epoch s']:.3f}")


if __name__ == "__main__":
    main()
