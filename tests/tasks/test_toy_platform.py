# SPDX-License-Identifier: Apache-2.0
"""A 3-unit platform end to end: search -> fine-tune -> export, and its costs equal its formulas."""

from __future__ import annotations

import json

from hydra import compose, initialize_config_dir

from odimo.hw import LayerGeometry
from odimo.models import load_mapped
from odimo.tasks.export import run as export_run
from odimo.tasks.train import run as train_run
from tests.hw.test_linear import ref_cycles
from tests.tasks.helpers import CONF, train_cfg


def test_three_units_search_finetune_export(tmp_path):
    cfg = train_cfg(
        tmp_path,
        "platform=toy3",
        "search.epochs=3",
        "strength=1e-5",
        "threads=1",
        "dataset.datamodule.num_workers=0",
    )
    train_run(cfg)
    run_dir = tmp_path / "run"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["platform"]["name"] == "toy3" and len(metrics["platform"]["units"]) == 3
    fracs = [metrics[f"final/arch/frac_{u}"] for u in ("big", "tern", "aux")]
    assert all(f > 0 for f in fracs), fracs  # the searched mapping uses all three units
    assert abs(sum(fracs) - 1.0) < 1e-12
    model, platform, mapping = load_mapped(run_dir / "final" / "model.pt")
    assert platform.unit_names == ("big", "tern", "aux")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        export_cfg = compose("export", [f"run_dir={run_dir}"])
    export_run(export_cfg)
    summary = json.loads((run_dir / "export" / "summary.json").read_text())
    diffs = summary["max_abs_diff"]
    assert diffs["mapped_vs_split"] == 0.0 and diffs["mapped_vs_onnx"] == 0.0
    report = json.loads((run_dir / "export" / "cost_report.json").read_text())
    total = 0.0
    for row in report["layers"]:
        g = LayerGeometry(**{k: row[k] for k in LayerGeometry.__dataclass_fields__})
        counts = [row[f"ch_{u}"] for u in platform.unit_names]
        ref = ref_cycles(g, counts)
        assert [row[f"cycles_{u}"] for u in platform.unit_names] == ref
        total += max(ref)
    assert report["latency_cycles"] == total == metrics["final/cost/latency_hard_cycles"]
    quant = json.loads((run_dir / "export" / "quant.json").read_text())
    formats = {
        u: e["weight_format"] for layer in quant["layers"] for u, e in layer["units"].items()
    }
    assert formats == {"big": "int8_pow2", "tern": "ternary_per_channel", "aux": "int8_pow2"}
    assert bool((mapping.counts_tensor(list(mapping.layers)).sum(0) > 0).all())
