"""Constrained vs unconstrained decoding on the same prompts: tokens/s and schema-validity rate.

    .venv/bin/python bench/structured.py [--prompts 10] [--max-tokens 64]

Starts a server on loopback (the embedded model), asks each prompt twice, once with a strict
json_schema response_format and once with the schema only described in the prompt, and prints
completion tokens per second of decode time (usage.completion_time) plus how many outputs validate.
Targets: constrained >= 80% of unconstrained tokens/s; 100% validity with constraints.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import groq
import jsonschema

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conftest import MODELS_DIR, start_server

MODEL = "qwen2.5-coder-0.5b-instruct"
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "category": {"enum": ["animal", "place", "thing", "person"]},
        "rating": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["name", "category", "rating", "tags"],
    "additionalProperties": False,
}
PROMPTS = [
    "a cat",
    "Paris",
    "a hammer",
    "Ada Lovelace",
    "the moon",
    "a violin",
    "Tokyo",
    "a penguin",
    "a bicycle",
    "Marie Curie",
    "a volcano",
    "a teapot",
]


def run(client: groq.Groq, prompt: str, constrained: bool, max_tokens: int) -> tuple[int, float, bool]:
    instruction = f"Describe {prompt} as JSON matching this schema: {json.dumps(SCHEMA)}. Output only JSON."
    extra = (
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "item", "schema": SCHEMA, "strict": True},
            }
        }
        if constrained
        else {}
    )
    try:
        completion = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": instruction}],
            max_completion_tokens=max_tokens,
            temperature=0,
            **extra,
        )
    except groq.BadRequestError:
        return 0, 0.0, False
    usage = completion.usage
    text = completion.choices[0].message.content or ""
    try:
        jsonschema.validate(json.loads(text.strip().removeprefix("```json").removesuffix("```")), SCHEMA)
        valid = True
    except (ValueError, jsonschema.ValidationError):
        valid = False
    return usage.completion_tokens, usage.completion_time or 0.0, valid


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    if not (MODELS_DIR / f"{MODEL}.gguf").exists():
        sys.exit(f"model weights not assembled under {MODELS_DIR}; run the e2e tests once first")
    server = start_server(Path(tempfile.mkdtemp(prefix="bench-structured-")), "--parallel", "1")
    try:
        client = groq.Groq(base_url=server.root, api_key=server.api_key, max_retries=0, timeout=600)
        totals = {False: [0, 0.0, 0], True: [0, 0.0, 0]}
        prompts = PROMPTS[: args.prompts]
        for prompt in prompts:
            for constrained in (False, True):  # interleaved, so load drift hits both sides alike
                tokens, seconds, valid = run(client, prompt, constrained, args.max_tokens)
                totals[constrained][0] += tokens
                totals[constrained][1] += seconds
                totals[constrained][2] += valid
        rate = {k: (v[0] / v[1] if v[1] else 0.0) for k, v in totals.items()}
        print(f"prompts: {len(prompts)}, max_tokens: {args.max_tokens}")
        print(f"unconstrained: {rate[False]:6.1f} tok/s  valid {totals[False][2]}/{len(prompts)}")
        print(f"constrained:   {rate[True]:6.1f} tok/s  valid {totals[True][2]}/{len(prompts)}")
        print(
            f"ratio constrained/unconstrained: {rate[True] / rate[False]:.0%}"
            if rate[False]
            else "ratio: n/a"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
