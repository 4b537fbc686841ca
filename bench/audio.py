"""Audio: transcription through the API vs faster-whisper called directly, and speech synthesis speed.

One live server (only the audio models loaded) and, in this process, the same CTranslate2 model
folder loaded with the same settings (int8, every core, beam 5, the temperature fallback, no VAD).
Rounds alternate API and direct on one espeak-ng clip, so both see the same machine state:
    API     POST /audio/transcriptions with the file (upload, decode, admission, transcribe, JSON)
    direct  WhisperModel.transcribe(path) (its own PyAV decode), consuming every segment
Printed per model: median seconds, real-time factor (processing seconds per audio second; lower is
faster) and API speed as a share of direct (target >= 90%). Speech: /audio/speech for a paragraph,
time to first byte, total time and RTF (synthesis seconds per second of audio produced).

    .venv/bin/python bench/audio.py --rounds 5
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import httpx
from faster_whisper import WhisperModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import MODELS_DIR, start_server  # noqa: E402 - the repo root must be on sys.path first

CLIP_TEXT = (
    "Good morning everyone, and thank you for joining the quarterly planning meeting. "
    "Today we will review the budget, the hiring plan for the support team, and the schedule "
    "for moving our servers to the new data center. Please send your questions to the "
    "accounting department before Friday, so that we can answer them at the next meeting."
)
SPEECH_TEXT = (
    "The library opens at nine in the morning and closes at six in the evening. "
    "Visitors can borrow up to ten books at a time, and return them at any branch in the city."
)
MODELS = ("whisper-tiny.en", "whisper-base")


def clip(folder: Path, repeat: int) -> Path:
    path = folder / "clip.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), CLIP_TEXT * repeat], check=True)
    return path


def duration_of(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        frames = list(container.decode(audio=0))
        return sum(f.samples for f in frames) / frames[0].sample_rate


def api_transcribe(server_root: str, key: str, path: Path, model: str) -> tuple[float, str]:
    start = time.perf_counter()
    response = httpx.post(
        f"{server_root}/openai/v1/audio/transcriptions",
        headers={"authorization": f"Bearer {key}"},
        data={"model": model, "language": "en"},
        files={"file": (path.name, path.read_bytes(), "audio/wav")},
        timeout=600,
    )
    response.raise_for_status()
    return time.perf_counter() - start, response.json()["text"]


def direct_transcribe(model: WhisperModel, path: Path) -> tuple[float, str]:
    start = time.perf_counter()
    segments, _ = model.transcribe(
        str(path),
        beam_size=5,
        language="en",
        temperature=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
        vad_filter=False,
    )
    text = "".join(s.text for s in segments).strip()
    return time.perf_counter() - start, text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2, help="times the clip text is repeated")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tiergate-bench-audio-"))
    path = clip(work, args.repeat)
    with av.open(str(path)) as container:
        seconds = float(container.duration or 0) / av.time_base
    config = work / "tiergate.toml"
    names = ", ".join(f'"{name}"' for name in (*MODELS, "piper-en-tts"))
    config.write_text(f"load_models = [{names}]\n")
    os.environ.setdefault("TIERGATE_MODELS_DIR", str(MODELS_DIR))
    server = start_server(work / "server", "--config", str(config))
    try:
        print(
            f"clip: {seconds:.1f} s of espeak-ng speech; {args.rounds} rounds per model; "
            f"{os.cpu_count()} cores"
        )
        print(f"{'model':<17}{'API s':>8}{'direct s':>10}{'API RTF':>9}{'direct RTF':>12}{'API/direct':>12}")
        for model_id in MODELS:
            direct_model = WhisperModel(
                str(MODELS_DIR / model_id), device="cpu", compute_type="int8", cpu_threads=os.cpu_count() or 1
            )
            api_transcribe(server.root, server.api_key, path, model_id)  # warm both
            direct_transcribe(direct_model, path)
            api_times, direct_times = [], []
            for _ in range(args.rounds):
                api_s, api_text = api_transcribe(server.root, server.api_key, path, model_id)
                direct_s, direct_text = direct_transcribe(direct_model, path)
                api_times.append(api_s)
                direct_times.append(direct_s)
            if api_text != direct_text:
                print(f"  note: texts differ\n  API:    {api_text[:120]}\n  direct: {direct_text[:120]}")
            api_m, direct_m = statistics.median(api_times), statistics.median(direct_times)
            print(
                f"{model_id:<17}{api_m:>8.2f}{direct_m:>10.2f}{api_m / seconds:>9.3f}"
                f"{direct_m / seconds:>12.3f}{direct_m / api_m:>11.0%}"
            )
            del direct_model
        speech(server.root, server.api_key, args.rounds)
    finally:
        server.stop()


def speech(root: str, key: str, rounds: int) -> None:
    body = {"model": "piper-en-tts", "voice": "joe", "input": SPEECH_TEXT, "response_format": "wav"}
    first_bytes, totals, lengths = [], [], []
    for _ in range(rounds + 1):
        start = time.perf_counter()
        chunks, first = [], None
        with httpx.stream(
            "POST",
            f"{root}/openai/v1/audio/speech",
            json=body,
            headers={"authorization": f"Bearer {key}"},
            timeout=600,
        ) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                if first is None:
                    first = time.perf_counter() - start
                chunks.append(chunk)
        first_bytes.append(first or 0.0)
        totals.append(time.perf_counter() - start)
        lengths.append(duration_of(b"".join(chunks)))
    # The first request is a warm-up (it may wait for the spare Piper process to finish loading).
    first_m, total_m, audio_s = (statistics.median(x[1:]) for x in (first_bytes, totals, lengths))
    print(
        f"speech piper-en-tts: {audio_s:.1f} s of audio in {total_m:.2f} s (RTF {total_m / audio_s:.3f}, "
        f"{audio_s / total_m:.1f}x real time); first byte after {first_m:.2f} s"
    )


if __name__ == "__main__":
    main()
