"""The usage ledger: one row per billed request, with the price factor of its tier.

Batch work costs half the synchronous price (GroqCloud: "50% cost discount"), so batch rows carry
cost_factor 0.5. Rows are added inside the caller's transaction: a batch line's usage commits
together with its result, so a line retried after a crash is never billed twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tiergate.store.models import UsageRecord

BATCH_COST_FACTOR = 0.5


def cost_factor(tier: str) -> float:
    return BATCH_COST_FACTOR if tier == "batch" else 1.0


@dataclass(frozen=True, slots=True)
class UsageEntry:
    project_id: str
    model: str
    tier: str
    request_id: str
    prompt_tokens: int
    completion_tokens: int
    audio_seconds: float = 0.0


def add_usage(session: Session, entry: UsageEntry, now: float) -> None:
    session.add(
        UsageRecord(
            project_id=entry.project_id,
            model=entry.model,
            tier=entry.tier,
            request_id=entry.request_id,
            prompt_tokens=entry.prompt_tokens,
            completion_tokens=entry.completion_tokens,
            audio_seconds=entry.audio_seconds,
            cost_factor=cost_factor(entry.tier),
            created_at=now,
        )
    )


@dataclass(frozen=True, slots=True)
class UsageTotal:
    model: str
    tier: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    # Tokens weighted by their price factor: what the project pays for, in synchronous-token units.
    billed_tokens: float
    audio_seconds: float = 0.0
    # Audio seconds weighted the same way.
    billed_audio_seconds: float = 0.0


def usage_totals(sessions: sessionmaker[Session], project_id: str) -> list[UsageTotal]:
    with sessions() as session:
        rows = session.execute(
            select(
                UsageRecord.model,
                UsageRecord.tier,
                func.count(),
                func.sum(UsageRecord.prompt_tokens),
                func.sum(UsageRecord.completion_tokens),
                func.sum(
                    (UsageRecord.prompt_tokens + UsageRecord.completion_tokens) * UsageRecord.cost_factor
                ),
                func.sum(UsageRecord.audio_seconds),
                func.sum(UsageRecord.audio_seconds * UsageRecord.cost_factor),
            )
            .where(UsageRecord.project_id == project_id)
            .group_by(UsageRecord.model, UsageRecord.tier)
            .order_by(UsageRecord.model, UsageRecord.tier)
        ).all()
    return [
        UsageTotal(m, t, int(n), int(p or 0), int(c or 0), float(b or 0), float(a or 0), float(ba or 0))
        for m, t, n, p, c, b, a, ba in rows
    ]
