"""Requested tier -> the tiers to try, in order (the spec's `auto` fallback chain and entitlements)."""

from __future__ import annotations

from tiergate.errors import PermissionDenied


def candidate_tiers(requested: str, *, performance_entitled: bool) -> tuple[str, ...]:
    """Tiers to try in order; the first whose limits allow the request serves it.

    auto: the highest tier the project may use whose limits still allow the request:
    performance (if entitled) -> on_demand -> flex.
    """
    if requested == "auto":
        return ("performance", "on_demand", "flex") if performance_entitled else ("on_demand", "flex")
    if requested == "performance" and not performance_entitled:
        raise PermissionDenied(
            "service_tier `performance` is not available to this project; ask an administrator to "
            "entitle it (tiergate projects update NAME --performance)",
            param="service_tier",
        )
    return (requested,)
