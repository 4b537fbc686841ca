"""Files API through the official SDKs: upload, list, retrieve, content, delete, validation, isolation."""

from __future__ import annotations

import groq
import httpx
import openai
import pytest
from groq.types import FileCreateResponse, FileListResponse

from tests.conftest import LiveServer
from tests.e2e.batch_helpers import chat_line, client, jsonl, new_project_key


def test_a_jsonl_file_round_trips_through_upload_list_content_and_delete(server: LiveServer) -> None:
    api = client(server)
    data = jsonl([chat_line("a"), chat_line("b")])
    created = api.files.create(file=("requests.jsonl", data), purpose="batch")
    FileCreateResponse.model_validate(created.model_dump())
    assert created.id.startswith("file_") and len(created.id) == len("file_") + 26
    assert (created.object, created.bytes, created.filename, created.purpose) == (
        "file",
        len(data),
        "requests.jsonl",
        "batch",
    )
    assert api.files.info(created.id).id == created.id
    listed = api.files.list()
    FileListResponse.model_validate(listed.model_dump())
    assert created.id in [f.id for f in listed.data]
    assert api.files.content(created.id).read() == data
    deleted = api.files.delete(created.id)
    assert deleted.deleted is True and deleted.id == created.id
    with pytest.raises(groq.NotFoundError):
        api.files.info(created.id)


def test_the_openai_sdk_parses_the_file_object(server: LiveServer) -> None:
    api = openai.OpenAI(base_url=server.openai_base, api_key=server.api_key, max_retries=0)
    created = api.files.create(file=("x.jsonl", jsonl([chat_line("a")])), purpose="batch")
    assert created.status == "processed" and created.purpose == "batch"


def test_an_invalid_line_is_refused_with_its_line_number(server: LiveServer) -> None:
    data = jsonl([chat_line("a")]) + b'{"custom_id": "b", \n'
    with pytest.raises(groq.BadRequestError) as caught:
        client(server).files.create(file=("bad.jsonl", data), purpose="batch")
    assert "line 2" in caught.value.message
    assert caught.value.response.json()["error"]["line"] == 2


def test_only_jsonl_files_for_batch_are_accepted(server: LiveServer) -> None:
    with pytest.raises(groq.BadRequestError):
        client(server).files.create(file=("data.csv", b"a,b\n"), purpose="batch")
    response = httpx.post(
        f"{server.openai_base}/files",
        headers={"authorization": f"Bearer {server.api_key}"},
        files={"file": ("x.jsonl", b"{}\n")},
        data={"purpose": "fine_tune"},
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "purpose"


def test_another_projects_file_is_not_found(server: LiveServer) -> None:
    mine = client(server).files.create(file=("mine.jsonl", jsonl([chat_line("a")])), purpose="batch")
    other = client(server, new_project_key(server))
    with pytest.raises(groq.NotFoundError):
        other.files.info(mine.id)
    with pytest.raises(groq.NotFoundError):
        other.files.content(mine.id)
    with pytest.raises(groq.NotFoundError):
        other.files.delete(mine.id)
    assert mine.id not in [f.id for f in other.files.list().data]
