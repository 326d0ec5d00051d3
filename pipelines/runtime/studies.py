"""Study runners: each `conf/study/NAME.yaml` names one of these as its `runner`.

A runner takes the plain config and the MLflow run tracker, logs its tables and plots, and
returns a summary to print.
"""
from __future__ import annotations

import csv
from pathlib import Path
import tempfile
from typing import Any

from pipelines.runtime import build
from pipelines.runtime.context import RunContext, ZooSource
from pipelines.runtime.tracking import RunTracker


def init_study(config: dict[str, Any], tracker: RunTracker) -> str:
    """The lecture's weight-init figures: per-layer activation mean/std for each case."""
    from components.checks import plots
    from components.checks.init_study import layer_activations

    results: dict[str, list[dict]] = {}
    for case, parts in config["cases"].items():
        init = dict(parts["init"], bias=config["bias"])
        results[case] = layer_activations(
            build.make(parts["activation"]), build.make(init), config["depth"], config["width"], config["num_samples"], config["seed"]
        )
        for row in results[case]:
            tracker.client.log_metric(tracker.run_id, f"{case}/std", row["std"], step=row["layer"])
            tracker.client.log_metric(tracker.run_id, f"{case}/mean", row["mean"], step=row["layer"])
    header = f"{'layer':>5} " + " ".join(f"{c:>18}" for c in results)
    lines = [header, " " * 6 + " ".join(f"{'mean':>8} {'std':>9}" for _ in results)]
    for i in range(config["depth"]):
        lines.append(f"{i + 1:>5} " + " ".join(f"{r[i]['mean']:>8.3f} {r[i]['std']:>9.3g}" for r in results.values()))
    table = "\n".join(lines)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        with open(out / "init_study.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["case", "layer", "mean", "std"])
            for case, rows in results.items():
                writer.writerows([case, r["layer"], r["mean"], r["std"]] for r in rows)
        (out / "init_study.txt").write_text(table + "\n")
        paths = [out / "init_study.csv", out / "init_study.txt", plots.init_study(results, out / "init_study.png")]
        for path in paths:
            tracker.client.log_artifact(tracker.run_id, str(path))
        figure = Path(config["output_dir"]) / "studies" / "init_study.png"
        figure.parent.mkdir(parents=True, exist_ok=True)
        figure.write_bytes(paths[-1].read_bytes())
    return table + f"\n\nfigure: {figure}"


def random_vs_grid(config: dict[str, Any], tracker: RunTracker) -> str:
    """Grid vs random search at the same budget (Bergstra & Bengio 2012), trials in-process."""
    import math

    import numpy as np

    from components.checks import plots
    from components.search import grid_values, parse_space, sample, set_dotted
    from pipelines.runtime.worker import LocalSession, run_training

    space = parse_space(config["space"])
    keys = list(space)
    side = max(1, round(math.sqrt(config["budget"])))
    base = {k: v for k, v in config.items() if k not in ("runner", "space", "budget", "epochs", "repeats", "cases")}
    base["trainer"] = {**base["trainer"], "epochs": config["epochs"]}
    base["diagnostics"] = {**base.get("diagnostics", {}), "enabled": False, "plots": False}
    quiet = RunContext(quiet=True)  # 27 short trials: the table at the end says what matters

    def evaluate(values: dict[str, Any]) -> float:
        return run_training(set_dotted(base, values), LocalSession(), quiet)["val/acc"]

    grids = [grid_values(space[k], side) for k in keys]
    strategies: dict[str, list[list[dict]]] = {"grid": [[{keys[0]: a, keys[1]: b} for a in grids[0] for b in grids[1]]]}
    strategies["random"] = [
        [{k: sample(space[k], rng) for k in keys} for _ in range(side * side)]
        for rng in (np.random.default_rng(config["seed"] + r) for r in range(config["repeats"]))
    ]
    trials, summary = [], {}
    for name, searches in strategies.items():
        bests, distinct = [], []
        for i, values_list in enumerate(searches):
            scores = [evaluate(v) for v in values_list]
            trials += [{"strategy": name, "search": i, **v, "val/acc": s} for v, s in zip(values_list, scores)]
            bests.append(max(scores))
            distinct.append(len({round(math.log10(v[keys[0]]), 6) for v in values_list}))
        summary[name] = {"best_mean": float(np.mean(bests)), "best_std": float(np.std(bests)), "distinct": float(np.mean(distinct)), "searches": len(searches)}
        tracker.client.log_metric(tracker.run_id, f"{name}/best_val_acc", summary[name]["best_mean"])
        tracker.client.log_metric(tracker.run_id, f"{name}/distinct_{keys[0]}", summary[name]["distinct"])
    lines = [f"{'strategy':<8} {'trials':>6} {'distinct ' + keys[0]:>22} {'best val/acc (mean ± std)':>28}"]
    for name, s in summary.items():
        lines.append(f"{name:<8} {side * side:>6} {s['distinct']:>22.0f} {s['best_mean']:>19.4f} ± {s['best_std']:.4f} (n={s['searches']})")
    table = "\n".join(lines)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        figure = plots.metric_vs_param(trials, keys[0], "val/acc", out / "random_vs_grid.png", group="strategy")
        with open(out / "random_vs_grid.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(trials[0]))
            writer.writeheader()
            writer.writerows(trials)
        (out / "random_vs_grid.txt").write_text(table + "\n")
        for path in (figure, out / "random_vs_grid.csv", out / "random_vs_grid.txt"):
            tracker.client.log_artifact(tracker.run_id, str(path))
        kept = Path(config["output_dir"]) / "studies" / "random_vs_grid.png"
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_bytes(figure.read_bytes())
    return table + f"\n\nfigure: {kept}"


def check_transfer(config: dict[str, Any]) -> None:
    """Every fine-tuning case names a strategy and an lr_scale in (0, 1]: checked before the
    study's MLflow run opens."""
    from components.zoo.transfer import STRATEGIES
    from pipelines.runtime.errors import UserError

    for name, case in (config.get("cases") or {}).items():
        scale = case.get("lr_scale") if isinstance(case, dict) else None
        if not isinstance(case, dict) or case.get("strategy") not in STRATEGIES or isinstance(scale, bool) \
                or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
            raise UserError(f"cases.{name}", f"needs strategy in {', '.join(STRATEGIES)} and lr_scale in (0, 1] (got {case}).",
                            f"e.g. cases.{name}={{strategy:full,lr_scale:0.1}}.")


def transfer(config: dict[str, Any], tracker: RunTracker) -> str:
    """Pretrain → bundle → fine-tune with each strategy, vs scratch, on a few-shot target task.
    In-process (world size 1): the same per-worker loop and the same `_zoo` path that
    `raysitter finetune` runs on Ray, minus the registry round trip."""
    import numpy as np

    from components.checks import plots
    from components.engine.checkpoint import read_meta
    from components.search import set_dotted
    from components.tracking import flatten
    from components.zoo import bundle_info, write_bundle
    from components.zoo.bundle import manifest_digest
    from pipelines.runtime.worker import LocalSession, run_training

    check_transfer(config)
    base = {k: v for k, v in config.items() if k not in ("runner", "pretrain", "target", "cases", "seeds")}
    base["diagnostics"] = {**(base.get("diagnostics") or {}), "enabled": False, "plots": False}
    quiet = RunContext(quiet=True)
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        source = set_dotted(base, flatten(config["pretrain"]))
        print(f"pretraining on {config['pretrain']} …", flush=True)
        session = LocalSession(checkpoint_root=f"{tmp}/pretrain")
        pre = run_training(source, session, quiet)
        meta = read_meta(session.last_checkpoint)
        net, _, _ = build.model_from_checkpoint(session.last_checkpoint)
        bundle = write_bundle(f"{tmp}/bundle", net.state_dict(), bundle_info(meta))
        tracker.client.log_metric(tracker.run_id, "pretrain/test/acc", pre["test/acc"])
        for seed in config["seeds"]:
            target = set_dotted(base, {**flatten(config["target"]), "seed": seed})
            for case in [*config["cases"], "scratch"]:
                context = quiet
                if case != "scratch":
                    spec = config["cases"][case]
                    context = RunContext(quiet=True, zoo=ZooSource(ref="study", path=str(bundle), tracking_uri=tracker.uri, strategy=spec["strategy"],
                                                                   lr_scale=float(spec["lr_scale"]), digest=manifest_digest(bundle)))
                acc = run_training(target, LocalSession(), context)["test/acc"]
                results.setdefault(case, []).append(acc)
                tracker.client.log_metric(tracker.run_id, f"{case}/test/acc", acc, step=seed)
                print(f"seed {seed}  {case:<8} test/acc {acc:.4f}", flush=True)
    n = config["target"].get("data", {}).get("train_per_class")
    lines = [f"source: {flatten(config['pretrain'])} → test/acc {pre['test/acc']:.4f}",
             f"target: {flatten(config['target'])}  ({n} training images per class)", "",
             f"{'case':<14} {'strategy':<9} {'lr_scale':>8} {'test/acc mean ± std':>20}   per seed"]
    for case, accs in results.items():
        spec = config["cases"].get(case, {"strategy": "-", "lr_scale": "-"})
        lines.append(f"{case:<14} {spec['strategy']:<9} {spec['lr_scale']!s:>8} {np.mean(accs):>11.4f} ± {np.std(accs):.4f}   " + " ".join(f"{a:.3f}" for a in accs))
        tracker.client.log_metric(tracker.run_id, f"{case}/test/acc_mean", float(np.mean(accs)))
    table = "\n".join(lines)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        figure = plots.bars({k: v for k, v in results.items()}, "test/acc on the target task", out / "transfer.png",
                            title=f"digits 0–4 → 5–9, {n} images per class")
        (out / "transfer.txt").write_text(table + "\n")
        for path in (figure, out / "transfer.txt"):
            tracker.client.log_artifact(tracker.run_id, str(path))
        kept = Path(config["output_dir"]) / "studies" / "transfer.png"
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_bytes(figure.read_bytes())
    return table + f"\n\nfigure: {kept}"


transfer.check = check_transfer  # what `raysitter study` runs before opening the study's run
