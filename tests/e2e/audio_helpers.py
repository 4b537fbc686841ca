"""Test audio made on the spot with espeak-ng and sox (Debian packages `make test` installs)."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import groq
import openai

from tests.conftest import LiveServer

SENTENCE = "Please send the invoice to the accounting department by Friday."
KEY_WORDS = ("invoice", "accounting", "department", "friday")
GERMAN = "Guten Morgen. Ich trinke gerne Kaffee mit Milch."
TINY = "whisper-tiny.en"
BASE = "whisper-base"
TTS = "piper-en-tts"


def speak(folder: Path, text: str, *, voice: str = "en-us", name: str = "speech.wav") -> Path:
    path = folder / name
    subprocess.run(["espeak-ng", "-v", voice, "-s", "140", "-w", str(path), text], check=True)
    return path


def to_mp3(wav: Path) -> Path:
    mp3 = wav.with_suffix(".mp3")
    subprocess.run(["sox", str(wav), "-C", "128", str(mp3)], check=True)
    return mp3


def tone(folder: Path, seconds: float, name: str = "tone.wav") -> Path:
    path = folder / name
    subprocess.run(
        ["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(path), "synth", str(seconds), "sine", "440"],
        check=True,
    )
    return path


def to_ogg(source: Path) -> Path:
    """Ogg Vorbis at sox's lowest quality: many seconds in a few kilobytes."""
    ogg = source.with_suffix(".ogg")
    subprocess.run(["sox", str(source), "-C", "-1", str(ogg)], check=True)
    return ogg


def to_hi_res(wav: Path, pad_seconds: float, name: str = "hi-res.wav") -> Path:
    """The same speech as 192 kHz stereo float32 (1.5 MB a second), padded with silence: a large
    file of short audio."""
    out = wav.with_name(name)
    convert = ["-r", "192000", "-c", "2", "-b", "32", "-e", "floating-point"]
    subprocess.run(["sox", str(wav), *convert, str(out), "pad", "0", str(pad_seconds)], check=True)
    return out


def seconds_of(path: Path) -> float:
    return float(subprocess.run(["soxi", "-D", str(path)], capture_output=True, text=True, check=True).stdout)


def data_url(path: Path, media_type: str = "audio/wav") -> str:
    return f"data:{media_type};base64,{base64.b64encode(path.read_bytes()).decode()}"


def has_key_words(text: str, words: tuple[str, ...] = KEY_WORDS, at_least: int = 3) -> bool:
    lowered = text.lower()
    return sum(word in lowered for word in words) >= at_least


def groq_client(server: LiveServer, **kw: object) -> groq.Groq:
    return groq.Groq(base_url=server.root, api_key=server.api_key, max_retries=0, timeout=120, **kw)


def openai_client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.openai_base, api_key=server.api_key, max_retries=0, timeout=120)
