"""Service tiers: which tier serves a request, its rate limits, and its turn for a slot."""
