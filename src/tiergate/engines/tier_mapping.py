"""Our service tier -> the fields an upstream understands (seed 002: one client-side tier, native controls
inside the gateway).

| kind                      | performance            | on_demand   | flex    | batch       |
|---------------------------|------------------------|-------------|---------|-------------|
| groq, tiergate            | service_tier           | on_demand   | flex    | on_demand   |
|                           | = performance          |             |         |             |
| openai                    | service_tier=priority  | default     | flex    | flex        |
| vllm, sglang              | priority = -100        | 0           | 100     | 200         |
| llama-server, ollama,     | nothing: our scheduler alone decides                          |
| generic                   |                                                               |

vLLM and SGLang schedule lower `priority` first. The values are spaced widely because SGLang only
preempts across a gap larger than its threshold; vLLM ignores the field unless started with
`--scheduling-policy priority` and never preempts a running request, which is why the gateway keeps
capping flex and batch in flight itself. GroqCloud's synchronous API has no batch tier and its flex may
answer 498, so batch lines (already confined to idle slots by our scheduler) go as on_demand there.
"""

from __future__ import annotations

from typing import Any

KINDS = ("vllm", "sglang", "openai", "groq", "tiergate", "llama-server", "ollama", "generic")

_PRIORITY = {"performance": -100, "on_demand": 0, "flex": 100, "batch": 200}
_GROQ_TIER = {"performance": "performance", "on_demand": "on_demand", "flex": "flex", "batch": "on_demand"}
_OPENAI_TIER = {"performance": "priority", "on_demand": "default", "flex": "flex", "batch": "flex"}

# Fields a client might send to steer an engine's own scheduling; the gateway decides the tier, so they
# never reach the upstream as sent.
CLIENT_PRIORITY_FIELDS = ("priority", "service_tier")


def tier_fields(kind: str, tier: str) -> dict[str, Any]:
    """The body fields that carry `tier` to an upstream of `kind` (empty: it has no notion of tiers)."""
    if kind in ("vllm", "sglang"):
        return {"priority": _PRIORITY[tier]}
    if kind in ("groq", "tiergate"):
        return {"service_tier": _GROQ_TIER[tier]}
    if kind == "openai":
        return {"service_tier": _OPENAI_TIER[tier]}
    return {}
