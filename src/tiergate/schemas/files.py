"""Files API bodies, shaped like GroqCloud's (and parseable by the groq and openai SDKs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from tiergate.store.files_repo import FileInfo


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    # Not in GroqCloud's object; the openai SDK's FileObject requires it. Files are usable at once.
    status: Literal["processed"] = "processed"

    @classmethod
    def of(cls, info: FileInfo) -> FileObject:
        return cls(
            id=info.id,
            bytes=info.bytes,
            created_at=int(info.created_at),
            filename=info.filename,
            purpose=info.purpose,
        )


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True
