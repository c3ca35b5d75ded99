"""The package against the CLI on the same texts, its errors, and its behaviour under threads."""

import json
import threading
import time

import pytest

import calmline
from conftest import MODELS, cli_score, gold_conversations, run_cli

TEXTS = [
    ("Thank you so much, that fixed it.", None),
    ("This is the third time I'm calling and the router STILL doesn't work!", None),
    ("You are a useless idiot, put me through to someone with a brain.", None),
    ("Ez teljesen elfogadhatatlan, már harmadszor hívom önöket!", None),
    ("אתה מטומטם לגמרי, תעביר אותי למישהו אחר", None),
    ("Ich warte seit zwei Wochen auf eine Antwort, das ist eine Frechheit.", "de"),
    ("Desliguei e liguei novamente.", "pt"),
    ("ok 👍", None),
]


def test_analyze_gives_what_the_cli_gives(classifier):
    got = classifier.analyze([t for t, _ in TEXTS[:5]]) + [classifier.analyze(t, lang=l)[0] for t, l in TEXTS[5:]]
    stdin = "".join(json.dumps({"id": i, "text": t, **({"lang": l} if l else {})}) + "\n" for i, (t, l) in enumerate(TEXTS))
    done = run_cli("analyze", "--jsonl", stdin=stdin)
    assert done.returncode == 0, done.stderr
    expected = [json.loads(line) for line in done.stdout.splitlines()]
    for e in expected:
        del e["id"]
    assert got == expected
    # The texts are not all alike: an insult is flagged, a thank-you is not, with spans on the insult.
    assert got[0]["flags"] == [] and "insult" in got[2]["flags"]
    assert got[2]["spans"], "the insult's words are given"
    assert set(got[0]) == {"language", "language_measured", "scores", "flags", "severity", "spans"}


def test_bad_texts_raise_clear_errors(classifier):
    with pytest.raises(ValueError, match="text 1"):
        classifier.analyze(["fine", ""])
    with pytest.raises(ValueError, match="text 0"):
        classifier.analyze(["x" * (calmline.MAX_TEXT_BYTES + 1)])
    with pytest.raises(TypeError, match="text 0 is int"):
        classifier.analyze([3])
    conv = classifier.conversation("en")
    with pytest.raises(ValueError, match="speaker"):
        conv._conversation.turn("robot", "hello")
    assert classifier.analyze([]) == []


def test_missing_model_files_say_how_to_fetch_them(tmp_path):
    with pytest.raises(calmline.ModelFilesMissing, match="python -m calmline fetch"):
        calmline.Classifier(MODELS, base=tmp_path)
    with pytest.raises(calmline.ModelFilesMissing, match="head.json is missing"):
        calmline.Classifier(tmp_path)


def test_a_live_conversation_follows_the_ladder_as_calmline_score_does(classifier, tmp_path):
    escalating = [c for c in map(json.loads, gold_conversations(per_language=15)) if c["locale"] == "en"]
    # An English conversation whose customer is abusive at some point, so the ladder moves.
    cli = cli_score(tmp_path, [json.dumps(c) for c in escalating])
    conversation = next(c for c in escalating if cli["records"][c["id"]]["incidents"])
    conv = classifier.conversation(locale=conversation["locale"])
    turns = [conv.customer(t["text"]) if t["speaker"] == "customer" else conv.agent(t["text"]) for t in conversation["turns"]]
    assert turns == cli["records"][conversation["id"]]["turns"]
    assert conv.turns == len(conversation["turns"])
    assert any(t["guidance"]["action"] != "NONE" for t in turns if t["speaker"] == "customer")
    assert all("conduct" in t for t in turns if t["speaker"] == "agent")


def test_score_transcripts_gives_the_records_of_calmline_score(classifier, tmp_path):
    lines = gold_conversations(per_language=4)
    bad = json.dumps({"id": "bad-1", "turns": [{"speaker": "robot", "text": "beep"}]})
    lines.insert(3, bad)
    cli = cli_score(tmp_path, lines)
    given = [json.loads(l) for l in lines]
    given[0] = lines[0]  # a JSON string is taken as well as a dict
    records = list(classifier.score_transcripts(given, source="cli-input.jsonl"))
    assert len(records) == len(lines)
    failed = [r for r in records if "error" in r]
    assert [(r["id"], r["line"]) for r in failed] == [("bad-1", 4)]
    assert [(e["id"], e["line"]) for e in cli["errors"]] == [("bad-1", 4)]
    scored = [r for r in records if "error" not in r]
    for record in scored:
        expected = cli["records"][record["id"]]
        assert record["source"]["line"] == expected["source"]["line"]
        record.pop("source"), expected.pop("source")
        assert record == expected, record["id"]
    assert {r["model_version"] for r in scored} == {classifier.model_version}


def test_calls_from_threads_agree_and_leave_the_interpreter(classifier):
    texts = [t for t, _ in TEXTS] * 8
    alone = classifier.analyze(texts)
    results = [None] * 4

    def work(i):
        results[i] = classifier.analyze(texts)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    ticks = 0
    started = time.monotonic()
    for t in threads:
        t.start()
    # This thread keeps running Python while the model runs: the calls released the GIL.
    while any(t.is_alive() for t in threads):
        ticks += 1
        time.sleep(0.001)
    assert all(r == alone for r in results)
    assert ticks > 50, f"the main thread ran {ticks} times in {time.monotonic() - started:.1f} s"


def test_the_readme_line_works_with_the_packaged_model(tmp_path):
    """README's "Python" lines: the installed package, its own model files and the encoder files
    in the user cache (where `make wheel` copies them), nothing else configured."""
    import os
    import subprocess
    import sys

    base = tmp_path / "cache" / "calmline" / "base"
    base.mkdir(parents=True)
    for name in calmline.BASE_FILES:
        os.symlink(MODELS / "base" / name, base / name)
    env = {k: v for k, v in os.environ.items() if k not in ("CALMLINE_MODELS", "CALMLINE_BASE")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    line = "import calmline; print(calmline.Classifier().analyze(['You idiot'])[0]['flags'])"
    done = subprocess.run([sys.executable, "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "insult" in done.stdout
