"""The question-type prior (qgmrn.analysis.prior)."""

from __future__ import annotations

import pytest

from qgmrn.analysis.prior import majority_answers, prior_scores


def _q(subtype: str, answer: str) -> dict:
    return {"program": [{"function": "scene", "inputs": [], "value_inputs": []},
                        {"function": subtype, "inputs": [0], "value_inputs": []}],
            "answer": answer}  # fmt: skip


def test_majority_answer_per_subtype_with_a_stable_tie_break():
    train = [_q("exist", "yes"), _q("exist", "yes"), _q("exist", "no"), _q("count", "2"),
             _q("count", "1")]  # fmt: skip
    assert majority_answers(train) == {"exist": "yes", "count": "1"}  # tie: CLEVR's order
    assert majority_answers(list(reversed(train))) == {"exist": "yes", "count": "1"}


def test_prior_scores_by_type_and_unseen_subtypes_are_wrong():
    train = [_q("exist", "no"), _q("count", "3")]
    val = [_q("exist", "no"), _q("exist", "yes"), _q("count", "3"), _q("query_color", "red")]
    ev = prior_scores(train, val)
    assert ev["n"] == 4 and ev["overall"] == pytest.approx(0.5)
    assert ev["by_type"]["exist"] == pytest.approx(0.5) and ev["by_type"]["count"] == 1.0
    assert ev["by_type"]["query_attribute"] == 0.0


def test_data_set_prior_is_kept_until_a_question_file_changes(tmp_path, monkeypatch):
    """The scores are cached in DATA_DIR/cache/prior_<split>.json, keyed by the two files;
    a changed train file is scored anew; a data set that cannot be written is scored as is."""
    import json

    from qgmrn.analysis.prior import data_set_prior

    q = tmp_path / "questions"
    q.mkdir()

    def write(split, questions):
        for i, x in enumerate(questions):
            x.update(image_index=0, image_filename=f"CLEVR_{split}_000000.png",
                     question="Is there a cube?", question_index=i, split=split,
                     question_family_index=0)  # fmt: skip
        (q / f"CLEVR_{split}_questions.json").write_text(json.dumps({"questions": questions}))

    write("train", [_q("exist", "no")])
    write("val", [_q("exist", "no"), _q("exist", "yes")])
    assert data_set_prior(tmp_path)["overall"] == pytest.approx(0.5)
    cached = tmp_path / "cache" / "prior_val.json"
    assert json.loads(cached.read_text())["scores"]["overall"] == pytest.approx(0.5)
    saved = json.loads(cached.read_text())
    saved["scores"]["overall"] = 0.123  # the cache is what is read while the files stand
    cached.write_text(json.dumps(saved))
    assert data_set_prior(tmp_path)["overall"] == 0.123
    assert data_set_prior(tmp_path, cache=False)["overall"] == pytest.approx(0.5)
    write("train", [_q("exist", "yes"), _q("exist", "yes")])  # another size: scored anew
    assert data_set_prior(tmp_path)["overall"] == pytest.approx(0.5)
    assert json.loads(cached.read_text())["scores"]["overall"] == pytest.approx(0.5)
    cached.unlink()

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("qgmrn.fileio.atomic_write_json", refuse)  # a read-only data set
    assert data_set_prior(tmp_path)["overall"] == pytest.approx(0.5) and not cached.exists()
