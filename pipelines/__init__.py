"""Entry points that compose components from Hydra configs and hand them to Ray."""
import os

# Read by Ray when it is imported: Ray's log de-duplication treats lines that differ only in
# numbers as repeats, which would swallow the epoch lines of parallel trials.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
