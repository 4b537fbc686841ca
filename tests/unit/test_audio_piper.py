"""The Piper engine's process handling, over a scripted stand-in for Piper's command line.

The stand-in is a real process speaking Piper's protocol (text line on stdin, raw PCM on stdout),
scripted to misbehave in ways the real Piper can (stall mid-speech, die before speaking), which a
real voice cannot be made to do on demand.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from tiergate.engines.audio_assets import VoiceFiles
from tiergate.engines.base import ModelSpec
from tiergate.engines.piper import PiperEngine, SpeechEngineError

# argv: the engine's own flags (--model ... --output-raw); the script's behaviour comes from the env.
STAND_IN = """
import os, sys, time
open(os.environ["PIDFILE"], "a").write(f"{os.getpid()}\\n")
text = sys.stdin.readline()
mode = os.environ["MODE"]
if mode == "die":
    sys.exit(3)
sys.stdout.buffer.write(b"\\x01\\x00" * 4000)
sys.stdout.buffer.flush()
if mode == "stall":
    time.sleep(120)
"""


def engine_for(tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> PiperEngine:
    config = tmp_path / "voice.onnx.json"
    config.write_text(json.dumps({"audio": {"sample_rate": 22050}}))
    (tmp_path / "voice.onnx").write_bytes(b"")
    monkeypatch.setenv("MODE", mode)
    monkeypatch.setenv("PIDFILE", str(tmp_path / "pids"))
    voice = VoiceFiles("joe", tmp_path / "voice.onnx", config)
    return PiperEngine(ModelSpec(id="fake-tts", engine="piper"), [voice], [sys.executable, "-c", STAND_IN])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_piper_that_stalls_is_killed_and_the_stream_ends_with_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engine_for(tmp_path, "stall", monkeypatch)
    try:
        pcm = await engine.synthesize("Hello there.", "joe", speed=1.5, stall_seconds=0.5)
        assert len(await anext(pcm)) > 0  # it spoke, then went quiet
        started = time.monotonic()
        with pytest.raises(SpeechEngineError, match=r"stalled for 0\.5 s"):
            await anext(pcm)
        assert time.monotonic() - started < 3
        pid = int((tmp_path / "pids").read_text().split()[0])
        assert not alive(pid)
    finally:
        await engine.close()


async def test_a_piper_that_dies_before_speaking_is_a_speech_engine_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engine_for(tmp_path, "die", monkeypatch)
    try:
        pcm = await engine.synthesize("Hello there.", "joe", speed=1.5)
        with pytest.raises(SpeechEngineError, match="exited with status 3"):
            await anext(pcm)
    finally:
        await engine.close()


async def test_a_piper_that_speaks_and_exits_gives_all_its_audio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engine_for(tmp_path, "speak", monkeypatch)
    try:
        pcm = await engine.synthesize("Hello there.", "joe", speed=1.5, stall_seconds=5)
        assert sum([len(chunk) async for chunk in pcm]) == 8000
    finally:
        await engine.close()
