"""Batch QA on Apache Spark with calmline: transcripts (JSON lines or Parquet) in, the per-conversation,
per-turn and error tables of `calmline score` out, as Parquet.

    spark-submit examples/spark/score_transcripts.py 'transcripts/*.jsonl' --out qa/2026-12-03

Needs the calmline wheel on the driver and the executors, and the encoder files where the
executors find them (python/README.md, "On a cluster").
"""

import argparse

from pyspark.sql import SparkSession

from calmline.spark import read_transcripts, score_transcripts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="transcripts: a file, folder or glob of JSON lines or Parquet")
    parser.add_argument("--out", required=True, help="output folder: conversations/, turns/, errors/")
    parser.add_argument("--format", choices=["auto", "jsonl", "parquet"], default="auto")
    parser.add_argument("--models", help="model folder on the executors (default: the package's)")
    parser.add_argument("--base", help="encoder files' folder on the executors (default: $CALMLINE_BASE, --files, the user cache)")
    parser.add_argument("--policy", help="policy file on the executors (default: the built-in one)")
    parser.add_argument("--mode", default="errorifexists", help="Spark's save mode for the outputs (e.g. overwrite)")
    args = parser.parse_args()

    spark = SparkSession.builder.appName("calmline-score").getOrCreate()
    tables = score_transcripts(
        read_transcripts(spark, args.input, args.format), models=args.models, base=args.base, policy=args.policy
    )
    tables.write(args.out, mode=args.mode)
    errors = tables.errors.count()
    print(f"scored {tables.conversations.count()} conversations ({tables.turns.count()} turns) into {args.out}; {errors} failed")
    spark.stop()


if __name__ == "__main__":
    main()
