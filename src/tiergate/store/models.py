"""Tables for tenancy (organizations, projects, API keys) and per-model rate-limit overrides.

Times are unix seconds in float columns: portable across SQLite and PostgreSQL, and the
clock the rest of tiergate passes around already speaks unix seconds.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names, so a hand-written migration and the models agree on
# every backend (PostgreSQL needs names to drop or alter a constraint later).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TIERS = ("on_demand", "flex", "performance")
LIMIT_UNITS = ("rpm", "rpd", "tpm", "tpd", "ash", "asd")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Organization(Base):
    """An organization: the outer ceiling for rate limits. Self-hosted installs use one, "default"."""

    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Unique so that two processes creating "default" at once cannot both succeed.
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[float] = mapped_column(Float)


class Project(Base):
    """A project inside an organization; API keys belong to it and it may carry its own limits."""

    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    # Entitlement to the performance tier (a tiergate extension above on_demand).
    performance: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[float] = mapped_column(Float)


class ApiKey(Base):
    """An API key. Only the SHA-256 of the secret is stored; the secret is shown once at creation."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    # What a listing shows so people can tell keys apart, e.g. "gsk_ab…wxyz".
    prefix: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float)


class RateLimitOverride(Base):
    """Limits for one model and tier, at org level (project_id NULL) or for one project.

    A NULL unit means "not overridden here": the org row, then the model's defaults apply.
    """

    __tablename__ = "rate_limit_overrides"
    __table_args__ = (
        UniqueConstraint("org_id", "project_id", "model", "tier"),
        # SQL treats NULLs as distinct, so the constraint above cannot stop two org-level rows
        # for the same model and tier; this partial index does, on SQLite and PostgreSQL alike.
        Index(
            "uq_rate_limit_overrides_org_level",
            "org_id",
            "model",
            "tier",
            unique=True,
            sqlite_where=text("project_id IS NULL"),
            postgresql_where=text("project_id IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(20))
    rpm: Mapped[int | None] = mapped_column(BigInteger)
    rpd: Mapped[int | None] = mapped_column(BigInteger)
    tpm: Mapped[int | None] = mapped_column(BigInteger)
    tpd: Mapped[int | None] = mapped_column(BigInteger)
    ash: Mapped[int | None] = mapped_column(BigInteger)
    asd: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[float] = mapped_column(Float)

    def units(self) -> dict[str, int | None]:
        """The six limit units of this row by name (rpm, rpd, tpm, tpd, ash, asd)."""
        return {unit: getattr(self, unit) for unit in LIMIT_UNITS}


# --- Files and batches (0002_files_batches) -------------------------------------------------------


class StoredFile(Base):
    """A file's metadata; the bytes live in the blob store under `blob_key`.

    Every read is scoped by project_id: another project's id is indistinguishable from an unknown one.
    """

    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    lines: Mapped[int] = mapped_column(BigInteger, default=0)
    blob_key: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[float] = mapped_column(Float)


class BatchJob(Base):
    """A batch and its lifecycle. Counters move in the same transaction as the line that moved them."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(64))
    org_name: Mapped[str] = mapped_column(String(200))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    project_name: Mapped[str] = mapped_column(String(200))
    key_id: Mapped[str] = mapped_column(String(64))
    endpoint: Mapped[str] = mapped_column(String(64))
    input_file_id: Mapped[str] = mapped_column(String(64))
    completion_window: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    # What finalization ends in: completed, expired or cancelled (survives a crash mid-finalize).
    final_status: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    in_progress_at: Mapped[float | None] = mapped_column(Float)
    finalizing_at: Mapped[float | None] = mapped_column(Float)
    completed_at: Mapped[float | None] = mapped_column(Float)
    failed_at: Mapped[float | None] = mapped_column(Float)
    expired_at: Mapped[float | None] = mapped_column(Float)
    cancelling_at: Mapped[float | None] = mapped_column(Float)
    cancelled_at: Mapped[float | None] = mapped_column(Float)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    completed: Mapped[int] = mapped_column(BigInteger, default=0)
    failed: Mapped[int] = mapped_column(BigInteger, default=0)
    errors_json: Mapped[str | None] = mapped_column(Text)
    metadata_json: Mapped[str | None] = mapped_column(Text)
    output_file_id: Mapped[str | None] = mapped_column(String(64))
    error_file_id: Mapped[str | None] = mapped_column(String(64))
    # Batch-level work (validation, finalization) is claimed by one process with a lease.
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[float | None] = mapped_column(Float)


class BatchLine(Base):
    """One input line: its request, who runs it (lease), and its result line once finished.

    state: pending -> running -> done | failed; or expired / cancelled when the batch stops first.
    A result is written only by the lease owner while the row is still `running`, so each line
    ends exactly once even when a crashed process comes back or two servers share the database.
    """

    __tablename__ = "batch_lines"
    __table_args__ = (Index("ix_batch_lines_batch_id_state", "batch_id", "state"),)

    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    line: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    custom_id: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    request: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(BigInteger, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[float | None] = mapped_column(Float)
    result: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[float | None] = mapped_column(Float)


class UsageRecord(Base):
    """The usage ledger: one row per billed request; batch rows carry cost_factor 0.5."""

    __tablename__ = "usage_ledger"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    model: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(20))
    request_id: Mapped[str] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    # Billed audio seconds (at least 10 a request) of a transcription or translation; 0 for chat.
    audio_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    cost_factor: Mapped[float] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)
