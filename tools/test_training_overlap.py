"""The overlap check itself (run by `make test` with the trainer's tests): a light rewording of an
evaluation text is caught, not only an exact repeat, and a different text is not."""
import os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import training_overlap  # noqa: E402


def test_a_light_rewording_is_too_close_and_a_different_text_is_not():
    evaluation = [training_overlap.normalise(t) for t in (
        "The flight to Palermo was cancelled and nobody told me, I found out at the gate.",
        "Could you send the invoice again?",
    )]
    assert training_overlap.too_close("The flight to Catania was cancelled and nobody told me, I found out at the gate!", evaluation) == [0]
    assert training_overlap.too_close("could you send the INVOICE again", evaluation) == [1]
    assert training_overlap.too_close("My parcel went to the neighbour's address instead of mine.", evaluation) == []
