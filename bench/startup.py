"""Seconds to the first result: the default job (digits, MLP 256-256, Adam 1e-3, batch 128,
20 epochs, one worker, one thread), from starting a process to its exit, four ways side by side:

- plain          a hand-written PyTorch script: the same model, data split and epochs, a
                 validation pass every epoch and the test pass at the end;
- ray script     a hand-written Ray Train V2 script (a TorchTrainer with one worker, one
                 `ray.train.report` with a checkpoint per epoch, RAY_TRAIN_HEALTH_CHECK_INTERVAL_S
                 =0.1), starting its own local Ray;
- raysitter cold `raysitter train` with every artifact the default run produces (MLflow run,
                 per-epoch metrics, plots, bundle, model, checkpoints), starting its own Ray;
- raysitter warm the same against a local Ray already running (`ray start --head`), found by
                 raysitter itself (no RAY_ADDRESS, no RAY_AUTH_MODE: the warm path a user gets).

Each variant runs `--repeats` times, interleaved (plain, ray script, cold, warm, plain, …), each
in a fresh output folder; the local Ray is up only for the warm runs (a `ray.init()` without an
address joins a running local head it finds); the table shows medians. Targets (#19): raysitter cold ≤ 1.0× the
ray script, raysitter warm ≤ 3× plain.

    python bench/startup.py [--repeats 3] [--epochs 20]

Last line: `ratio: X` = ray script ÷ raysitter cold (≥ 1.0 meets the target).
"""
from __future__ import annotations

import os
from pathlib import Path
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

from _common import BIN, ROOT, arguments, table

# What both hand-written scripts do before and inside each epoch (the same data split, model,
# optimizer and batches): one text, so the two cannot drift apart.
SETUP = r'''
import torch, torch.nn as nn, torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
torch.set_num_threads(1)
d = load_digits()
x = torch.tensor(d.images, dtype=torch.float32).div_(16.0).reshape(len(d.images), -1)
y = torch.tensor(d.target)
idx = torch.arange(len(y)).numpy()
train, rest = train_test_split(idx, test_size=0.3, random_state=0, stratify=d.target)
val, test = train_test_split(rest, test_size=0.5, random_state=0, stratify=d.target[rest])
mean, std = x[train].mean(0), x[train].std(0) + 1e-8
x = (x - mean) / std
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
PREPARE
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
tr = torch.tensor(train)
def accuracy(ix):
    model.eval()
    with torch.no_grad():
        return float((model(x[ix]).argmax(1) == y[ix]).float().mean())
def train_one_epoch():
    model.train()
    order = tr[torch.randperm(len(tr))]
    for i in range(0, len(order), 128):
        b = order[i:i + 128]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[b]), y[b]).backward()
        opt.step()
'''

PLAIN = r'''
import sys
''' + SETUP.replace("PREPARE", "") + r'''
epochs = int(sys.argv[1])
for epoch in range(1, epochs + 1):
    train_one_epoch()
    print(f"epoch {epoch} val/acc {accuracy(torch.tensor(val)):.4f}", flush=True)
print(f"test/acc {accuracy(torch.tensor(test)):.4f}")
'''

RAY_SCRIPT = r'''
import os, sys, tempfile
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
import ray, ray.train
from ray.train.torch import TorchTrainer

def loop(config):
    import ray.train, ray.train.torch
''' + textwrap.indent(SETUP.replace("PREPARE", "model = ray.train.torch.prepare_model(model)"), "    ") + r'''
    for epoch in range(1, config["epochs"] + 1):
        train_one_epoch()
        metrics = {"epoch": epoch, "val/acc": accuracy(torch.tensor(val))}
        if epoch == config["epochs"]:
            metrics["test/acc"] = accuracy(torch.tensor(test))
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(model.state_dict(), os.path.join(tmp, "model.pt"))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

ray.init(include_dashboard=False, logging_level="WARNING")
trainer = TorchTrainer(loop, train_loop_config={"epochs": int(sys.argv[1])},
                       scaling_config=ray.train.ScalingConfig(num_workers=1),
                       run_config=ray.train.RunConfig(name="bench", storage_path=sys.argv[2]))
result = trainer.fit()
print("test/acc", result.metrics.get("test/acc"))
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_without_ray() -> dict[str, str]:
    drop = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "MLFLOW_TRACKING_URI", "RAYSITTER_OUTPUT_DIR")
    return {k: v for k, v in os.environ.items() if k not in drop}


def timed(command: list[str], env: dict[str, str], cwd: Path, expect: str = "") -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - started
    if result.returncode != 0 or expect not in result.stdout:
        raise SystemExit(f"{' '.join(command[:3])} … failed ({result.returncode}{f'; no {expect!r}' if expect else ''}):\n"
                         f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return seconds


class LocalRay:
    """`ray start --head --block` in its own process group: a running local Ray for the warm
    runs, stopped by signalling that group only (never `ray stop`, which stops every Ray here)."""

    def __enter__(self) -> str:
        port = free_port()
        self.proc = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--node-ip-address=127.0.0.1",
                                      "--dashboard-host=127.0.0.1", f"--dashboard-port={free_port()}", "--disable-usage-stats"],  # as the README starts one
                                     env={**env_without_ray(), "RAY_AUTH_MODE": "token"}, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self.address = f"127.0.0.1:{port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    time.sleep(3)  # the GCS answers before the raylet has registered
                    return self.address
            except OSError:
                time.sleep(0.5)
        raise SystemExit("ray start --head did not come up")

    def __exit__(self, *exc: object) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        # `ray start` records its address for later `ray.init()` calls to join; stopped by a signal it
        # leaves that record behind, and a later local `ray.init()` would wait on the dead address
        record = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if record.is_file() and record.read_text().strip().endswith(":" + self.address.rsplit(":", 1)[1]):
            record.unlink()  # ours (it names our port; the host part is the node's IP)


def main() -> None:
    args = arguments(__doc__, repeats=3, epochs=20)
    times: dict[str, list[float]] = {"plain": [], "ray script": [], "raysitter cold": [], "raysitter warm": []}
    with tempfile.TemporaryDirectory(prefix="raysitter-bench-startup-") as tmp:
        root = Path(tmp)
        (root / "plain.py").write_text(PLAIN)
        (root / "ray_script.py").write_text(RAY_SCRIPT)
        train = [str(BIN / "raysitter"), "train", f"trainer.epochs={args.epochs}"]
        for r in range(args.repeats):
            out = root / f"r{r}"
            out.mkdir()
            # no Ray runs here for the first three: with none recorded, `ray.init()` starts its own
            times["plain"].append(timed([sys.executable, str(root / "plain.py"), str(args.epochs)], env_without_ray(), out))
            times["ray script"].append(timed([sys.executable, str(root / "ray_script.py"), str(args.epochs), str(out / "ray")],
                                             env_without_ray(), out))
            cold = {**env_without_ray(), "RAYSITTER_OUTPUT_DIR": str(out / "cold"), "RAY_ADDRESS": "local"}  # its own Ray
            times["raysitter cold"].append(timed(train, cold, ROOT))
            with LocalRay() as address:  # up only for the warm run (its start is not timed)
                warm = {**env_without_ray(), "RAYSITTER_OUTPUT_DIR": str(out / "warm")}  # found, as a user's command finds it
                times["raysitter warm"].append(timed(train, warm, ROOT, expect=f":{address.rsplit(':', 1)[1]} (started by ray start --head)"))  # Ray records the node IP
            print(f"repeat {r + 1}/{args.repeats}: " + "  ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)
    median = {k: statistics.median(v) for k, v in times.items()}
    rows = [{"variant": k, "median s": median[k], "runs (s)": " ".join(f"{t:.1f}" for t in v),
             "× plain": median[k] / median["plain"], "× ray script": median[k] / median["ray script"]} for k, v in times.items()]
    print(table(rows))
    print(f"targets: raysitter cold ≤ 1.0× ray script (now {median['raysitter cold'] / median['ray script']:.2f}×); "
          f"raysitter warm ≤ 3× plain (now {median['raysitter warm'] / median['plain']:.2f}×)")
    print(f"ratio: {median['ray script'] / median['raysitter cold']:.2f}")


if __name__ == "__main__":
    main()
