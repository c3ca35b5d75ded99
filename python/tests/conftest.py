"""Shared set-up: the repository's model (models/, fetched by `make setup`) and the `calmline`
binary of the same build, whose outputs the package must reproduce."""

import json
import os
import subprocess
from pathlib import Path

import pytest

import calmline

REPO = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("CALMLINE_TEST_MODELS", REPO / "models"))
CALMLINE_BIN = Path(os.environ.get("CALMLINE_BIN", REPO / "target" / "debug" / "calmline"))


@pytest.fixture(scope="session")
def classifier() -> calmline.Classifier:
    return calmline.Classifier(MODELS)


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, CALMLINE_MODELS=str(MODELS))
    return subprocess.run([str(CALMLINE_BIN), *args], input=stdin, capture_output=True, text=True, env=env, timeout=600)


def gold_conversations(per_language: int):
    """Conversations of data/conversations (the project's own), `per_language` of each language,
    as `calmline score` input lines (the gold judgements stripped)."""
    lines = []
    for path in sorted((REPO / "data" / "conversations").glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for line in f.readlines()[:per_language]:
                c = json.loads(line)
                for key in ("split", "kind"):
                    c.pop(key, None)
                for t in c["turns"]:
                    t.pop("gold", None)
                lines.append(json.dumps(c, ensure_ascii=False))
    return lines


def cli_score(tmp_path: Path, lines) -> dict:
    """`calmline score` over `lines`: its conversation records by id, and its error lines."""
    src = tmp_path / "cli-input.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "cli-out"
    done = run_cli("score", str(src), "--out", str(out), "--progress", "never")
    assert done.returncode in (0, 1), done.stderr
    records = {}
    for line in (out / "conversations.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        records[r["id"]] = r
    errors = [json.loads(l) for l in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines() if l.strip()]
    return {"records": records, "errors": errors}
