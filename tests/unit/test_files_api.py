"""The files route has its own body limit: uploads may go past max_body_bytes up to max_file_bytes."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson

from tests.scripted_app import first_key
from tiergate.app import create_app
from tiergate.config import Settings


async def test_uploads_get_the_file_limit_while_other_routes_keep_the_body_limit(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, max_body_bytes=2_000, max_file_bytes=20_000)
    app = create_app(settings)
    key = first_key(settings)
    line = orjson.dumps({"custom_id": "x" * 80, "method": "POST"}) + b"\n"
    headers = {"authorization": f"Bearer {key}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://t/openai/v1", headers=headers
    ) as client:
        ok = await client.post("/files", files={"file": ("a.jsonl", line * 50)}, data={"purpose": "batch"})
        assert ok.status_code == 200, ok.text
        assert ok.json()["bytes"] == len(line) * 50 > settings.max_body_bytes
        too_big = await client.post(
            "/files", files={"file": ("a.jsonl", line * 300)}, data={"purpose": "batch"}
        )
        assert too_big.status_code in (400, 413)
        chat = await client.post("/chat/completions", content=b"x" * 5_000)
        assert chat.status_code == 413
        listed = await client.get("/files")
        assert [f["id"] for f in listed.json()["data"]] == [ok.json()["id"]]
