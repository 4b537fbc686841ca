"""tiergate: a self-hosted, GroqCloud-compatible LLM API with real service tiers."""

__version__ = "0.1.0"
