"""Batch QA on Apache Spark: transcripts in a DataFrame, scored by calmline on the executors, out as
three tables with the fields of `calmline score`.

    from calmline.spark import read_transcripts, score_transcripts
    tables = score_transcripts(read_transcripts(spark, "s3://bucket/transcripts/*.jsonl"))
    tables.write("s3://bucket/qa/2026-12-03")     # conversations/, turns/, errors/ as Parquet

The input has the columns of `calmline score`'s JSON lines: `id`, `locale`, `agent_id` and `turns`
(an array of `speaker`, `text` and optionally `lang`), read from JSON lines or Parquet. Each
executor's Python worker loads the model once and scores its partitions with `mapInPandas`; one
scoring pass feeds all three tables. `examples/spark/score_transcripts.py` runs it with
spark-submit; python/README.md ("On a cluster") says how to ship the wheel and the model files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

__all__ = ["read_transcripts", "score_transcripts", "ScoredTables", "RECORD_SCHEMA", "TURN_SCHEMA"]

#: One turn of a scored conversation: a turn of `calmline score`'s records.
TURN_SCHEMA = (
    "turn_index INT, speaker STRING, text STRING, language STRING, language_measured BOOLEAN, "
    "scores MAP<STRING, DOUBLE>, flags ARRAY<STRING>, severity STRING, "
    "guidance STRUCT<action: STRING, rule: STRING, source: STRING, hint: STRING, hint_locale: STRING, "
    "evidence: ARRAY<STRING>, donts: ARRAY<STRUCT<rule: STRING, hint: STRING>>, "
    "spans: ARRAY<STRUCT<label: STRING, begin: INT, end: INT, byte_begin: INT, byte_end: INT, score: DOUBLE>>>, "
    "conduct ARRAY<STRING>"
)

#: A scored conversation: `calmline score`'s record (its `source` is the input file, with no line).
RECORD_SCHEMA = (
    "id STRING, agent_id STRING, locale STRING, source STRUCT<file: STRING, line: BIGINT>, "
    "model_version STRING, policy_hash STRING, conduct_version STRING, "
    f"turns ARRAY<STRUCT<{TURN_SCHEMA}>>, "
    "incidents ARRAY<STRUCT<turn_index: INT, action: STRING, severity: STRING, labels: ARRAY<STRING>>>, "
    "summary STRUCT<customer_turns: INT, agent_turns: INT, max_severity: STRING, max_action: STRING, "
    "flagged_turns: MAP<STRING, INT>, agent_conduct: MAP<STRING, INT>, "
    "final_state: STRUCT<turns: INT, customer_turns: INT, heated_turns: INT, boundary_set: BOOLEAN, "
    "manager_involved: BOOLEAN, calm_streak: INT>>"
)

#: What `mapInPandas` returns per input conversation: the record as JSON, or the error.
_SCORED_SCHEMA = "id STRING, record STRING, error STRING, input_file STRING"

_INPUT_FILE = "_calmline_input_file"

# One classifier per Python worker process (Spark reuses its workers), per model.
_CLASSIFIERS: Dict[Tuple[Optional[str], Optional[str], Optional[str]], Any] = {}


@dataclass
class ScoredTables:
    """The three outputs of a scoring run (lazy DataFrames over one cached scoring pass)."""

    #: One row per conversation: the record's fields but its turns.
    conversations: DataFrame
    #: One row per turn: `conversation_id` and the turn's fields.
    turns: DataFrame
    #: One row per conversation that could not be read or scored: `file`, `id`, `error`.
    errors: DataFrame

    def write(self, out: str, mode: str = "errorifexists") -> None:
        """Writes `out/conversations`, `out/turns` and `out/errors` as Parquet."""
        self.conversations.write.mode(mode).parquet(f"{out}/conversations")
        self.turns.write.mode(mode).parquet(f"{out}/turns")
        self.errors.write.mode(mode).parquet(f"{out}/errors")


def read_transcripts(spark: SparkSession, path: str, format: str = "auto") -> DataFrame:
    """Reads transcripts from JSON lines or Parquet (`format` "jsonl", "parquet", or "auto" by the
    path's extension). JSON is read with the transcript schema, so a file whose lines lack a field
    still gives the same columns."""
    if format == "auto":
        format = "parquet" if path.rstrip("/").endswith(".parquet") else "jsonl"
    if format == "parquet":
        df = spark.read.parquet(path)
    elif format == "jsonl":
        schema = "id STRING, locale STRING, agent_id STRING, turns ARRAY<STRUCT<speaker: STRING, text: STRING, lang: STRING>>"
        df = spark.read.schema(schema).json(path)
    else:
        raise ValueError(f"format must be jsonl, parquet or auto, not {format!r}")
    return df.withColumn(_INPUT_FILE, F.input_file_name())


def _classifier(models: Optional[str], base: Optional[str], policy: Optional[str]):
    import calmline

    key = (models, base, policy)
    if key not in _CLASSIFIERS:
        if base is None and not os.environ.get("CALMLINE_BASE"):
            # Files shipped with `spark-submit --files` / `SparkContext.addFile` land here.
            from pyspark import SparkFiles

            shipped = Path(SparkFiles.getRootDirectory())
            if (shipped / calmline.BASE_FILES[0]).is_file():
                base = str(shipped)
        _CLASSIFIERS[key] = calmline.Classifier(models, base=base, policy=policy)
    return _CLASSIFIERS[key]


def _plain(value: Any) -> Any:
    """A pandas/Arrow cell (numpy arrays, Rows as dicts) as plain JSON-able Python."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _score_partition(models: Optional[str], base: Optional[str], policy: Optional[str]):
    def score(batches: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd

        classifier = _classifier(models, base, policy)
        for batch in batches:
            transcripts = []
            for row in batch.to_dict("records"):
                transcript = {k: _plain(v) for k, v in row.items() if k != _INPUT_FILE and v is not None}
                transcripts.append(transcript)
            files = batch[_INPUT_FILE].tolist() if _INPUT_FILE in batch else [""] * len(batch)
            rows = []
            for file, record in zip(files, classifier.score_transcripts(transcripts, source="spark")):
                if "error" in record:
                    rows.append({"id": record.get("id"), "record": None, "error": record["error"], "input_file": file})
                else:
                    # The input file, as `calmline score` gives it; a Spark row has no line number.
                    record["source"] = {"file": file, "line": None}
                    rows.append({"id": record["id"], "record": json.dumps(record, ensure_ascii=False), "error": None, "input_file": file})
            yield pd.DataFrame(rows, columns=["id", "record", "error", "input_file"])

    return score


def score_transcripts(
    transcripts: DataFrame,
    *,
    models: Optional[str] = None,
    base: Optional[str] = None,
    policy: Optional[str] = None,
) -> ScoredTables:
    """Scores a DataFrame of transcripts on the executors. `models`, `base` and `policy` are as for
    `calmline.Classifier`, as paths on the executors; without `base`, the encoder files are taken
    from `$CALMLINE_BASE`, files shipped with `--files`, or the user cache (`calmline.fetch()`)."""
    if _INPUT_FILE not in transcripts.columns:
        transcripts = transcripts.withColumn(_INPUT_FILE, F.lit(""))
    scored = transcripts.mapInPandas(_score_partition(models, base, policy), _SCORED_SCHEMA)
    # One scoring pass feeds the three tables.
    scored = scored.persist()
    records = scored.where(F.col("error").isNull()).select(F.from_json("record", RECORD_SCHEMA).alias("r")).select("r.*")
    conversations = records.drop("turns")
    turns = records.select(F.col("id").alias("conversation_id"), F.explode("turns").alias("t")).select("conversation_id", "t.*")
    errors = scored.where(F.col("error").isNotNull()).select(F.col("input_file").alias("file"), "id", "error")
    return ScoredTables(conversations, turns, errors)
