"""The presets as tables: what tells the models apart, and their routed layers and gates
(notebooks 00 and 02)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def model_gate_table(presets: Sequence[str], profile: str = "paper") -> pd.DataFrame:
    """Routed layers, gates and parameters of each preset's model (built, not trained)."""
    from qgmrn.config import get_config
    from qgmrn.model import build_model

    rows = []
    for preset in presets:
        cfg = get_config(preset, profile)
        model = build_model(cfg.model, 100, 28)
        sizes = list(getattr(model, "gate_sizes", []))
        rows.append(
            {
                "preset": preset,
                "arch": cfg.model.arch,
                "routed layers L": len(sizes),
                "gates (sum of M_l)": sum(sizes),
                "modules per layer M_l": " ".join(str(s) for s in sizes),
                "parameters (M)": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            }
        )
    return pd.DataFrame(rows).set_index("preset")


def preset_table(profile: str) -> pd.DataFrame:
    """The presets (models) of `profile` with the fields that tell them apart."""
    from qgmrn.config import PRESETS, get_config

    rows = []
    for name in PRESETS:
        m = get_config(name, profile).model
        rows.append(
            {
                "preset": name,
                "arch": m.arch,
                "gate": m.gate,
                "cardinality": m.cardinality if m.arch == "brn" else None,
                "depths": m.brn_depths if m.arch == "brn" else None,
                "widths": m.brn_widths if m.arch == "brn" else None,
                "third norm": m.third_norm if m.arch == "brn" else None,
                "head": m.head,
                "q to classifier": m.head_uses_q,
            }
        )
    return pd.DataFrame(rows).set_index("preset")
