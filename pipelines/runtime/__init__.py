"""What raysitter's commands share: the Hydra app and its checks (app, schema, validate,
errors), building components (build), the per-worker loop (worker), Ray (ray_runner),
MLflow (tracking), training runs (training), sweeps (sweep), run state (resume), multirun
(multirun), preflight probes (probes), studies (studies), the servers (serve) and cluster jobs
(cluster). Commands (pipelines/*.py) sit on top; nothing here imports a command."""
