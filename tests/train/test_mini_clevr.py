"""Training and CLEVR-Humans fine-tuning on the generated mini-CLEVR (the real data path)."""

from __future__ import annotations

import json
import shutil

from qgmrn.engine import finetune, fit

from . import tiny_config


def test_train_then_finetune_on_mini_clevr(mini_clevr_dir, tmp_path):
    data = tmp_path / "mini-clevr"
    shutil.copytree(mini_clevr_dir, data)  # fit writes the image cache into the data folder
    run = fit(tiny_config("brn_c8"), data, tmp_path / "run", progress=False, max_steps=3)
    assert run["step"] == 3 and run["stop_reason"] == "max_steps"
    n_val = len(
        json.loads((data / "questions" / "CLEVR_val_questions.json").read_text())["questions"]
    )
    ev = run["eval"]
    assert ev["n"] == n_val and sum(ev["count_by_type"].values()) == n_val

    humans = finetune(tmp_path / "run", data, tmp_path / "humans", max_steps=2, progress=False)
    n_humans = len(
        json.loads((data / "CLEVR-Humans" / "CLEVR-Humans-val.json").read_text())["questions"]
    )
    assert humans["step"] == 2 and humans["eval"]["n"] == n_humans
    assert humans["eval"]["by_type"] == {}
    assert (tmp_path / "humans" / "routing_paths.npz").exists()
