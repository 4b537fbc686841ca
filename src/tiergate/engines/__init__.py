"""Engines turn a prepared prompt into token deltas; they know nothing of tiers or limits."""
