"""benchctl: benchmark test-time planners on learned world models."""

__version__ = "0.1.0"
