"""tools/label_cues.py (run by `make test` with the trainer's tests): a word seen only with the
label is a cue, one seen both ways is not, digits count as one cue, and the project's training
files give every language a non-empty list (today's rounds do use such words)."""
import os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import label_cues  # noqa: E402


def case(text, must, must_not):
    return {"text": text, "must": must, "must_not": must_not}


def test_a_word_only_complaints_use_is_a_cue_and_a_word_calm_turns_share_is_not():
    cases = [case(f"Waited {n} weeks, still nothing", ["frustration"], []) for n in (2, 3, 4)]
    cases += [case("Still there? Thanks, all good", [], ["frustration"]), case("Profanity only", ["profanity"], [])]
    known = label_cues.targets(cases, "frustration")
    assert len(known) == 4  # the case whose frustration is neither must nor must_not is left out
    cues = {cue: (with_label, seen) for cue, with_label, seen in label_cues.label_cues(known, min_count=3, min_rate=0.9)}
    assert cues["weeks"] == (3, 3)
    assert cues["# weeks"] == (3, 3)  # 2, 3 and 4 are one cue
    assert "still" not in cues  # 3 of 4 with the label: under the rate
    assert "nothing" in cues and "thanks" not in cues


def test_every_language_of_the_training_turns_has_frustration_cues():
    for lang in ("en", "hu", "he", "de", "ru", "ar"):
        known = label_cues.targets(label_cues.training_cases(lang), "frustration")
        assert len(known) > 500, lang
        assert label_cues.label_cues(known, 5, 0.9), lang


def test_a_files_round_is_read_from_its_name_and_bounds_the_cases_read():
    import pathlib
    assert label_cues.file_round(pathlib.Path("en.jsonl")) == 1
    assert label_cues.file_round(pathlib.Path("de-r26b.jsonl")) == 26
    assert label_cues.file_round(pathlib.Path("ru-r33.jsonl")) == 33
    before = label_cues.training_cases("ru", before_round=33)
    assert not any("-t33-" in c["group"] for c in before)
    assert len(before) < len(label_cues.training_cases("ru"))
