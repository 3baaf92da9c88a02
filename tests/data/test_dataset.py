"""The dataset, its batches and loader, and image normalisation."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from qgmrn.clevr import SUBTYPES
from qgmrn.data import (
    Batch,
    ClevrQuestions,
    Vocab,
    build_cache,
    collate,
    make_loader,
    normalize_images,
    open_cache,
)
from qgmrn.data.vocab import END, START, UNK

from .conftest import QUESTIONS

SIZE = (16, 24)


@pytest.fixture
def prepared(clevr_dir):
    for split in ("train", "test"):
        build_cache(clevr_dir, split, SIZE, workers=0, progress=False)
    return clevr_dir


@pytest.fixture
def vocab():
    return Vocab.build(q for q, _, _ in QUESTIONS)


def test_item_holds_image_tokens_answer_subtype(prepared, vocab):
    ds = ClevrQuestions(prepared, "train", vocab, SIZE)
    assert len(ds) == 10
    image, tokens, length, answer, subtype, qidx = ds[3]  # image 1, second question
    assert image.shape == (3, 16, 24) and image.dtype == torch.uint8
    assert torch.equal(
        image.permute(1, 2, 0), torch.from_numpy(open_cache(prepared, "train", SIZE)[1].copy())
    )
    text, ans, last = QUESTIONS[(1 + 1) % 3]
    assert tokens.tolist() == vocab.encode_question(text) and length == len(tokens)
    assert tokens[0] == START and tokens[-1] == END
    assert answer == vocab.encode_answer(ans) and SUBTYPES[subtype] == last
    assert qidx == 3


def test_getitems_fast_path_equals_collated_items(prepared, vocab):
    ds = ClevrQuestions(prepared, "train", vocab, SIZE)
    idx = [7, 0, 3, 3, 9, 2]  # unsorted, repeated: the gather must put each row back in place
    fast, slow = ds.__getitems__(idx), collate([ds[i] for i in idx])
    for name in ("images", "questions", "lengths", "answers", "subtypes", "question_index"):
        assert torch.equal(getattr(fast, name), getattr(slow, name)), name
    assert fast.images.shape == (6, 3, 16, 24)
    assert fast.questions.shape == (6, int(fast.lengths.max()))  # padded to the batch's longest
    for row, n in zip(fast.questions, fast.lengths, strict=True):
        assert (row[n:] == 0).all()  # 0-padded
    # (B, H, W, 3) bytes seen as (B, 3, H, W): the layout channels_last convolutions want
    assert fast.images.is_contiguous(memory_format=torch.channels_last)
    assert collate(fast) is fast


def test_test_split_has_no_answers_or_subtypes(prepared, vocab):
    ds = ClevrQuestions(prepared, "test", vocab, SIZE)
    assert (ds.answers == -1).all() and (ds.subtypes == -1).all()
    batch = ds.__getitems__([0, 1])
    assert batch.answers.tolist() == [-1, -1]


def test_humans_questions_file_without_programs_counts_unknown_words(prepared, vocab, tmp_path):
    humans = tmp_path / "CLEVR-Humans-train.json"
    humans.write_text(json.dumps({"questions": [
        {"question": "Is the weird thing red?", "answer": "no", "image_index": 4,
         "image_filename": "CLEVR_train_000004.png"},
        {"question": "How many red things?", "answer": "3", "image_index": 0,
         "image_filename": "CLEVR_train_000000.png"},
    ]}))  # fmt: skip
    ds = ClevrQuestions(prepared, "train", vocab, SIZE, questions_file=humans)
    assert len(ds) == 2 and (ds.subtypes == -1).all()
    assert ds.answers.tolist() == [vocab.encode_answer("no"), vocab.encode_answer("3")]
    assert UNK in ds.tokens[0] and vocab.unk_words["weird"] == 1


def test_max_questions_and_out_of_range_image(prepared, vocab, tmp_path):
    assert len(ClevrQuestions(prepared, "train", vocab, SIZE, max_questions=4)) == 4
    q = json.loads((prepared / "questions" / "CLEVR_train_questions.json").read_text())
    q["questions"][1]["image_index"] = 5
    q["questions"][1]["image_filename"] = "CLEVR_train_000005.png"
    bad = tmp_path / "CLEVR_train_questions.json"
    bad.write_text(json.dumps(q))
    with pytest.raises(ValueError, match="question 1 refers to image_index 5"):
        ClevrQuestions(prepared, "train", vocab, SIZE, questions_file=bad)


def test_questions_about_another_split_are_refused(prepared, vocab):
    test_file = prepared / "questions" / "CLEVR_test_questions.json"
    with pytest.raises(ValueError, match="CLEVR_test_000000.png .* not an image of the 'train'"):
        ClevrQuestions(prepared, "train", vocab, SIZE, questions_file=test_file)


def test_pickling_drops_the_memory_map(prepared, vocab):
    ds = ClevrQuestions(prepared, "train", vocab, SIZE)
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000  # not the images
    again = pickle.loads(blob)
    assert torch.equal(again[5][0], ds[5][0])


def test_loader_with_workers_is_seeded_and_covers_every_question(prepared, vocab):
    ds = ClevrQuestions(prepared, "train", vocab, SIZE)

    def epoch(workers):
        loader = make_loader(ds, batch_size=4, shuffle=True, num_workers=workers, seed=3,
                             device="cpu")  # fmt: skip
        assert not loader.pin_memory
        return list(loader)

    serial, parallel = epoch(0), epoch(2)
    assert all(isinstance(b, Batch) for b in serial)
    order = torch.cat([b.question_index for b in serial])
    assert sorted(order.tolist()) == list(range(10)) and order.tolist() != list(range(10))
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a.images, b.images) and torch.equal(a.questions, b.questions)
    assert len(serial[0].to("cpu")) == 4


def test_normalize_images_matches_imagenet_formula_any_dtype():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 5, 4), dtype=torch.uint8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    want = (x.float() / 255 - mean) / std
    torch.testing.assert_close(normalize_images(x), want)
    torch.testing.assert_close(normalize_images(x[0]), want[0])
    bf = normalize_images(x, dtype=torch.bfloat16)
    assert bf.dtype == torch.bfloat16
    torch.testing.assert_close(bf.float(), want, atol=0.02, rtol=0.01)
    cl = x.contiguous(memory_format=torch.channels_last)
    assert normalize_images(cl).is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="3, H, W"):
        normalize_images(torch.zeros(2, 4, 5, 5, dtype=torch.uint8))
