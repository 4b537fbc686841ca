"""Text to speech with Piper, run as a separate process: text in on stdin, raw PCM out on stdout.

PyPI's `piper-tts` is GPL-3.0-or-later and tiergate is Apache-2.0, so tiergate never imports it:
this engine only starts Piper's own command line (`python -m piper ... --output-raw`) and reads the
16-bit mono samples it writes as each sentence is synthesized, which also lets the API stream.

Loading a voice takes about a second, so each voice keeps one process warm: Piper loads the voice
before it reads stdin, so a spare started ahead of time is ready the moment text arrives. A request
at another speed (`--length-scale`) starts its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import sys
from collections.abc import AsyncGenerator, Awaitable, Sequence
from pathlib import Path
from typing import TypeVar

from tiergate.engines.audio_assets import VoiceFiles
from tiergate.engines.base import ModelSpec

log = logging.getLogger(__name__)
_READ = 16 * 1024
T = TypeVar("T")


class SpeechEngineError(Exception):
    """Piper failed (did not start, exited non-zero, or stalled); the server's fault, not the client's."""


def piper_command() -> list[str]:
    """Piper's CLI in this interpreter's environment (the `audio-tts` extra), found without importing it."""
    if importlib.util.find_spec("piper") is None:
        raise SpeechEngineError("piper-tts is not installed (install tiergate's `audio-tts` extra)")
    return [sys.executable, "-m", "piper"]


class PiperEngine:
    """The voices of one speech model; `slots` syntheses run at once (the scheduler owns them)."""

    def __init__(self, spec: ModelSpec, voices: Sequence[VoiceFiles], command: Sequence[str]) -> None:
        self.spec = spec
        self._voices = {voice.name.casefold(): voice for voice in voices}
        self._command = list(command)
        self._slots = max(1, int(spec.options.get("slots", 1)))
        self._spares: dict[str, asyncio.subprocess.Process] = {}
        self._refills: set[asyncio.Future[None]] = set()
        self.sample_rates = {name: _sample_rate(voice.config) for name, voice in self._voices.items()}

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def voices(self) -> list[str]:
        return [voice.name for voice in self._voices.values()]

    def voice(self, name: str) -> str | None:
        """The canonical voice name for `name` (any case), or None when this model has no such voice."""
        found = self._voices.get(name.casefold())
        return None if found is None else found.name

    def sample_rate(self, voice: str) -> int:
        return self.sample_rates[voice.casefold()]

    async def start(self) -> None:
        """Warm one process per voice so the first request does not wait for a voice to load."""
        for key in self._voices:
            await self._refill(key)

    async def synthesize(
        self, text: str, voice: str, speed: float = 1.0, *, stall_seconds: float = 60.0
    ) -> AsyncGenerator[bytes, None]:
        """Yield raw PCM as Piper produces it. Closing the iterator early kills the process.

        A Piper that writes nothing for `stall_seconds` is killed and the stream ends with
        SpeechEngineError, so a stuck process cannot hold its slot forever.
        """
        key = voice.casefold()
        process = self._spares.pop(key, None) if speed == 1.0 else None
        if process is None or process.returncode is not None:
            process = await self._spawn(self._voices[key], speed)
        if speed == 1.0:
            refill = asyncio.ensure_future(self._refill(key))
            self._refills.add(refill)
            refill.add_done_callback(self._refills.discard)
        return self._stream(process, text, stall_seconds)

    async def _stream(
        self, process: asyncio.subprocess.Process, text: str, stall_seconds: float
    ) -> AsyncGenerator[bytes, None]:
        assert process.stdin is not None and process.stdout is not None
        try:
            # One line: Piper splits sentences itself; newlines would only make separate utterances.
            process.stdin.write(" ".join(text.split()).encode() + b"\n")
            await _within(stall_seconds, process.stdin.drain())
            process.stdin.close()
            while chunk := await _within(stall_seconds, process.stdout.read(_READ)):
                yield chunk
            code = await _within(stall_seconds, process.wait())
            if code != 0:
                stderr = await process.stderr.read() if process.stderr is not None else b""
                log.error("piper exited with %s: %s", code, stderr.decode(errors="replace")[-2000:])
                raise SpeechEngineError(f"piper exited with status {code}")
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise SpeechEngineError("piper stopped before reading the text") from exc
        finally:
            await _kill(process)

    async def _spawn(self, voice: VoiceFiles, speed: float) -> asyncio.subprocess.Process:
        args = [*self._command, "--model", str(voice.model), "--config", str(voice.config), "--output-raw"]
        if speed != 1.0:
            # Piper's length scale is duration per phoneme: twice the speed is half the length.
            args += ["--length-scale", f"{1.0 / speed:.4f}"]
        try:
            return await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise SpeechEngineError(f"could not start piper: {type(exc).__name__}") from exc

    async def _refill(self, key: str) -> None:
        try:
            spare = await self._spawn(self._voices[key], 1.0)
        except SpeechEngineError:
            log.exception("could not warm a piper process for voice %s", key)
            return
        old = self._spares.get(key)
        if old is not None and old.returncode is None:
            await _kill(spare)  # a spare is already waiting; keep only one
            return
        self._spares[key] = spare

    async def close(self) -> None:
        for refill in list(self._refills):
            refill.cancel()
        await asyncio.gather(*self._refills, return_exceptions=True)
        spares, self._spares = list(self._spares.values()), {}
        for process in spares:
            await _kill(process)


async def _within(seconds: float, step: Awaitable[T]) -> T:
    """One read from (or the exit of) Piper, or SpeechEngineError when it takes over `seconds`."""
    try:
        return await asyncio.wait_for(step, seconds)
    except TimeoutError:
        log.error("piper wrote nothing for %g s; stopping it", seconds)
        raise SpeechEngineError(f"piper stalled for {seconds:g} s") from None


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    await process.wait()


def _sample_rate(config: Path) -> int:
    """Piper voices declare their output rate in the JSON config (`audio.sample_rate`)."""
    return int(json.loads(config.read_text())["audio"]["sample_rate"])
