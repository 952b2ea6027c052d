"""The experiment file: pydantic models (experiment.py) over a vocabulary of steps, probes,
steady-state conditions, final checks and workloads registered by `type` (base.py)."""
