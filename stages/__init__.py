"""Pipeline stages: plain Python, no orchestration imports. `flows/` wraps them in Prefect tasks."""

PIPELINE_VERSION = "0.1.0"
