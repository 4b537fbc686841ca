"""Batch API bodies: the create request and the batch object exactly as the groq SDK types it."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from tiergate.store.models import BatchJob

BatchStatus = Literal[
    "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"
]


class BatchCreateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input_file_id: str = Field(min_length=1)
    endpoint: str = Field(min_length=1)
    completion_window: str = Field(min_length=1)
    metadata: dict[str, str] | None = None


class BatchError(BaseModel):
    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None


class BatchErrors(BaseModel):
    # The reference's (and SDK's) object form, not the docs' bare array (digest §11 #8).
    object: Literal["list"] = "list"
    data: list[BatchError]


class RequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


class Batch(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None
    error_file_id: str | None
    created_at: int
    in_progress_at: int | None
    expires_at: int | None
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: RequestCounts
    metadata: dict[str, Any] | None

    @classmethod
    def of(cls, row: BatchJob) -> Batch:
        errors = orjson.loads(row.errors_json) if row.errors_json else None
        return cls(
            id=row.id,
            endpoint=row.endpoint,
            errors=BatchErrors(data=[BatchError(**e) for e in errors]) if errors else None,
            input_file_id=row.input_file_id,
            completion_window=row.completion_window,
            status=row.status,  # type: ignore[arg-type]
            # Result files appear with the final status, not while finalization is writing them.
            output_file_id=row.output_file_id,
            error_file_id=row.error_file_id,
            created_at=int(row.created_at),
            in_progress_at=_ts(row.in_progress_at),
            expires_at=_ts(row.expires_at),
            finalizing_at=_ts(row.finalizing_at),
            completed_at=_ts(row.completed_at),
            failed_at=_ts(row.failed_at),
            expired_at=_ts(row.expired_at),
            cancelling_at=_ts(row.cancelling_at),
            cancelled_at=_ts(row.cancelled_at),
            request_counts=RequestCounts(total=row.total, completed=row.completed, failed=row.failed),
            metadata=orjson.loads(row.metadata_json) if row.metadata_json else None,
        )


def _ts(value: float | None) -> int | None:
    return int(value) if value is not None else None


class BatchPaging(BaseModel):
    next_cursor: str | None = None


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Batch]
    paging: BatchPaging | None = None
