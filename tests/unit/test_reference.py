"""docs/vocabulary.md is generated from the registry and the schema: it must be what
`chaoslab reference` prints now, and a new vocabulary type must show up in it without an edit."""

from typing import Literal

from chaoslab import reference
from chaoslab.spec.base import REGISTRY, Step


def test_vocabulary_reference_is_current():
    assert reference.DOC.exists(), "docs/vocabulary.md is missing: run `chaoslab reference > docs/vocabulary.md`"
    assert reference.DOC.read_text() == reference.render(), \
        "docs/vocabulary.md is stale: run `chaoslab reference > docs/vocabulary.md`"


def test_a_new_step_type_appears_in_the_reference():
    before = reference.render()

    class ToyStep(Step):
        """Wiggle a toy, for the reference's test.

        Only the first paragraph is shown."""
        type: Literal["toy-wiggle"] = "toy-wiggle"
        wiggles: int = 3

    REGISTRY["step"]["toy-wiggle"] = ToyStep
    try:
        after = reference.render()
    finally:
        del REGISTRY["step"]["toy-wiggle"]
    assert after != before
    assert "### step: `toy-wiggle`" in after
    assert "Wiggle a toy, for the reference's test." in after
    assert "Only the first paragraph" not in after
    assert "| `wiggles` | integer | `3` |" in after
    assert reference.render() == before


def test_check_exits_1_when_stale(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "vocabulary.md"
    stale.write_text("old\n")
    monkeypatch.setattr(reference, "DOC", stale)
    assert reference.cli(type("A", (), {"check": True})()) == 1
    assert "chaoslab reference > docs/vocabulary.md" in capsys.readouterr().err
    stale.write_text(reference.render())
    assert reference.cli(type("A", (), {"check": True})()) == 0
