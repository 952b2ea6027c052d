"""chaoslab: a chaos-engineering lab on real containers for message-bus platforms."""

__version__ = "0.1.0"
