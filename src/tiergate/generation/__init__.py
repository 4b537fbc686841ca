"""Model-agnostic pieces between an engine's token deltas and the API: stops, constraints, tool calls."""

from tiergate.generation.stops import StopMatch, StopMatcher, apply_stops

__all__ = ["StopMatch", "StopMatcher", "apply_stops"]
