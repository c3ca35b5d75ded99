"""The Spark job in local mode over ~200 conversations: its Parquet tables hold what `calmline
score` writes for the same transcripts, conversation by conversation and turn by turn."""

import json
import os
import sys

import pytest

pyspark = pytest.importorskip("pyspark", reason="the Spark test needs pyspark (python/requirements-test.txt)")

from conftest import REPO, cli_score, gold_conversations  # noqa: E402


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    # The executors' Python is this one, where the calmline wheel is installed.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("calmline-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    yield session
    session.stop()


def _plain(value):
    """A Spark Row as the JSON value it was read from (maps stay dicts, structs become dicts)."""
    if hasattr(value, "asDict"):
        value = value.asDict(recursive=True)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def test_the_spark_job_writes_what_calmline_score_writes(spark, tmp_path):
    from calmline.spark import read_transcripts, score_transcripts

    lines = gold_conversations(per_language=34)  # 6 languages: 204 conversations
    lines.insert(10, json.dumps({"id": "bad-1", "turns": [{"speaker": "robot", "text": "beep"}]}))
    cli = cli_score(tmp_path, lines)
    src = tmp_path / "cli-input.jsonl"  # written by cli_score
    parquet_in = tmp_path / "transcripts.parquet"
    # The job reads JSON lines and Parquet alike: go through Parquet, as a data lake would hold them.
    read_transcripts(spark, str(src)).drop("_calmline_input_file").write.parquet(str(parquet_in))

    out = tmp_path / "qa"
    score_transcripts(read_transcripts(spark, str(parquet_in)), models=str(REPO / "models")).write(str(out))

    conversations = {r["id"]: _plain(r) for r in spark.read.parquet(str(out / "conversations")).collect()}
    turns = {}
    for r in spark.read.parquet(str(out / "turns")).collect():
        t = _plain(r)
        turns.setdefault(t.pop("conversation_id"), []).append(t)
    errors = [_plain(r) for r in spark.read.parquet(str(out / "errors")).collect()]

    assert len(conversations) == len(cli["records"]) == len(lines) - 1
    assert [e["id"] for e in errors] == ["bad-1"] and "speaker" in errors[0]["error"]
    for cid, expected in cli["records"].items():
        got = conversations[cid]
        got["turns"] = sorted(turns[cid], key=lambda t: t["turn_index"])
        assert "transcripts.parquet" in got["source"]["file"] and got["source"]["line"] is None
        for record in (got, expected):
            record.pop("source")
            for t in record["turns"]:
                # Absent fields read back as nulls: a customer turn has no `conduct`, an agent turn no `guidance`.
                for key in ("conduct", "guidance"):
                    if t.get(key) is None:
                        t.pop(key, None)
        assert json.loads(json.dumps(got)) == expected, cid
    assert sum(len(r["incidents"]) for r in cli["records"].values()) > 0, "some conversations escalate"


def test_the_example_job_runs_with_spark_submit(tmp_path):
    import subprocess

    src = tmp_path / "few.jsonl"
    few = gold_conversations(per_language=1)
    src.write_text("\n".join(few) + "\n", encoding="utf-8")
    out = tmp_path / "qa"
    spark_submit = os.path.join(os.path.dirname(sys.executable), "spark-submit")
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    done = subprocess.run(
        [spark_submit, "--master", "local[1]", "--conf", "spark.ui.enabled=false",
         str(REPO / "examples" / "spark" / "score_transcripts.py"), str(src), "--out", str(out), "--models", str(REPO / "models")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"scored {len(few)} conversations" in done.stdout and "0 failed" in done.stdout
    assert (out / "conversations").is_dir() and (out / "turns").is_dir() and (out / "errors").is_dir()
