"""Telemetry agent for the lab's VM containers: chaoslab's stand-in for Vector (vector.dev).

Vector cannot be installed on this machine, so this agent implements the part of Vector the
experiments exercise — a demo_logs source, a pulsar sink, Vector's sink buffer semantics and
Vector's internal buffer metric names — and nothing else. Set AGENT_IMAGE to a real
timberio/vector image to run Vector instead; compose/vector/vector.toml is valid for both.
"""
