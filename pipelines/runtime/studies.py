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
from pipelines.runtime.context import RunContext
from pipelines.runtime.tracking import PROJECT_DIR, RunTracker, log_dataset

STUDY_ONLY = ("tracking", "output_dir", "hydra")  # top-level keys an arm never takes from the study's command line


class Arms:
    """A study's training runs, each a run of its own: its config composed from its own override
    list (what the study's config chose, the study's command-line overrides of training keys,
    then the arm's), trained in-process (world size 1) into an MLflow run nested under the
    study's, which logs the whole config and the `raysitter train …` (or `raysitter finetune …`)
    command that reproduces it."""

    def __init__(self, study: str, tracker: RunTracker, choices: dict[str, Any], overrides: list[str], pins: list[str]) -> None:
        self.study, self.tracker, self.pins = study, tracker, pins
        given = train_overrides(overrides)
        named = {o.lstrip("+~").split("=")[0].replace(".", "/") for o in given}
        self.base = [*(c for c in group_choices(choices) if c.split("=")[0] not in named), *given]
        self.data = choices.get("data") or "data"

    def run(self, overrides: list[str], label: str, pipeline: str = "train", session: Any = None) -> tuple[dict[str, float], str]:
        """Trains one arm; returns its last metrics and its MLflow run id."""
        from dataclasses import replace
        import shlex

        from components.tracking import environment_tags
        from pipelines.runtime.finetuning import adopt_bundle
        from pipelines.runtime.frozen import thaw
        from pipelines.runtime.sweep import log_trial_config
        from pipelines.runtime.validate import compose_run
        from pipelines.runtime.worker import LocalSession, run_training

        own = [*self.base, *overrides]
        if pipeline == "finetune":  # the architecture is the zoo model's: the study's model choices do not apply
            own = [o for o in own if o.lstrip("+~").split("=")[0].replace("/", ".").split(".")[0] not in ("model", "preprocess")]
        context = RunContext(quiet=True)
        adopted: list[str] = []
        if pipeline == "finetune":  # the zoo model's architecture and weights, as `raysitter finetune` takes them
            adopted, source = adopt_bundle(thaw(compose_run("finetune", [*own, *self.pins])), verbose=False)
            context = replace(source, quiet=True)
        config = compose_run(pipeline, [*own, *self.pins, *adopted])
        client = self.tracker.client
        command = " ".join(["raysitter", pipeline, *(shlex.quote(o) for o in own)])
        run_id = client.create_run(
            self.tracker.experiment_id, run_name=f"{self.tracker.run.info.run_name}-{label}",
            tags={**environment_tags(PROJECT_DIR, f"raysitter study {self.study}"),
                  "mlflow.parentRunId": self.tracker.run_id, "pipeline": f"study-{pipeline}", "study": self.study,
                  "study.arm": label, "command": command, "hydra.overrides": " ".join(own) or "(none)", **context.tags},
        ).info.run_id
        try:
            log_trial_config(client, run_id, {}, config)
            log_dataset(client, run_id, config, self.data, None)
            metrics = run_training(config, session or LocalSession(), context.tracked(run_id, self.tracker.uri))
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, "FINISHED")
        return metrics, run_id


def group_choices(choices: dict[str, Any]) -> list[str]:
    """`group=option` for each training config group the study's config sets otherwise than
    `raysitter train` would (e.g. the transfer study's `model=convnet`)."""
    from pipelines.runtime.app import CONF_DIR, declared_choices

    default = declared_choices("train")
    return [f"{group}={option}" for group, option in sorted(choices.items())
            if group in default and option is not None and option != default[group] and (CONF_DIR / group).is_dir()]


def train_overrides(overrides: list[str]) -> list[str]:
    """The study command line's overrides of training keys (`model.channels=[8]`), not of the
    study's own (`budget=4`, `cases.head.strategy=…`)."""
    from pipelines.runtime.app import declared_choices

    groups = declared_choices("train")
    train_keys = {"data", "preprocess", "augment", "init", "model", "optimizer", "scheduler", "diagnostics", "ensembling",
                  "trainer", "seed", *groups}
    kept = []
    for override in overrides:
        key = override.lstrip("+~").split("=")[0].replace("/", ".").split(".")[0]
        if key in train_keys and key not in STUDY_ONLY:
            kept.append(override)
    return kept


def init_study(config: dict[str, Any], tracker: RunTracker, arms: Arms) -> str:
    """The lecture's weight-init figures: per-layer activation mean/std for each case."""
    from components.diagnostics import plots
    from components.diagnostics.init_study import layer_activations

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


def random_vs_grid(config: dict[str, Any], tracker: RunTracker, arms: Arms) -> str:
    """Grid vs random search at the same budget (Bergstra & Bengio 2012): every trial an arm of
    its own (`raysitter train … optimizer.lr=… optimizer.eps=…`), trained in-process."""
    import math

    import numpy as np

    from components.diagnostics import plots
    from components.search import grid_values, parse_space, sample
    from pipelines.runtime.validate import pin

    space = parse_space(config["space"])
    keys = list(space)
    side = max(1, round(math.sqrt(config["budget"])))
    fixed = [f"trainer.epochs={config['epochs']}", "diagnostics=off", "tracking.log_bundle=false"]

    def evaluate(values: dict[str, Any], label: str) -> float:
        return arms.run([*fixed, *(pin(k, v) for k, v in values.items())], label)[0]["val/acc"]

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
            scores = [evaluate(v, f"{name}{i}-{j}") for j, v in enumerate(values_list)]
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


def transfer(config: dict[str, Any], tracker: RunTracker, arms: Arms) -> str:
    """Pretrain → zoo → fine-tune with each strategy, vs scratch, on a few-shot target task.
    Every training is an arm of its own, nested under the study's run: the pretraining
    (`raysitter train …`, registered in the zoo as `zoo_name`), each fine-tuning
    (`raysitter finetune zoo=NAME/VERSION …`, the same path `raysitter finetune` runs) and
    each training from scratch; trained in-process (world size 1)."""
    import numpy as np
    from mlflow.tracking import MlflowClient

    from components.diagnostics import plots
    from components.tracking import flatten
    from components.zoo.registry import push
    from pipelines.runtime.validate import pin

    check_transfer(config)
    quiet = ["diagnostics=off", "tracking.log_bundle=false"]
    results: dict[str, list[float]] = {}
    print(f"pretraining on {config['pretrain']} …", flush=True)
    pre, pre_run = arms.run(["diagnostics=off", *(pin(k, v) for k, v in flatten(config["pretrain"]).items())], "pretrain")
    tracker.client.log_metric(tracker.run_id, "pretrain/test/acc", pre["test/acc"])
    registry = MlflowClient(tracker.uri, registry_uri=tracker.uri)
    source = push(registry, tracker.uri, pre_run, config["zoo_name"])
    source_ref = f"{source.name}/{source.version}"
    print(f"pretrained model registered as {source_ref} (run {pre_run})", flush=True)
    target = [pin(k, v) for k, v in flatten(config["target"]).items()]
    for seed in config["seeds"]:
        for case in [*config["cases"], "scratch"]:
            if case == "scratch":
                metrics, _ = arms.run([*target, f"seed={seed}", *quiet], f"{case}-seed{seed}")
            else:
                spec = config["cases"][case]
                metrics, _ = arms.run([f"zoo={source_ref}", *target, f"seed={seed}", f"finetune.strategy={spec['strategy']}",
                                       f"finetune.lr_scale={float(spec['lr_scale'])!r}", *quiet], f"{case}-seed{seed}", "finetune")
            acc = metrics["test/acc"]
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
