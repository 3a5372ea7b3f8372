# SPDX-License-Identifier: Apache-2.0
"""The speed benchmark runs end to end and reports its JSON (no timing assertions here)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from odimo.errors import ConfigError, OdimoError
from odimo.quant import fused
from odimo.quant.adc import set_training_draws, training_draws
from odimo.tasks.bench import run
from tests.tasks.helpers import CONF, REPO

KEYS = {
    "float_img_s",
    "search_img_s",
    "finetune_img_s",
    "search_ratio",
    "finetune_ratio",
    "device",
    "model",
    "batch",
}
TINY = ["model=res20", "batch=8", "steps=2", "warmup_steps=1", "input_size=[3,16,16]", "threads=1"]


def bench_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="bench", overrides=list(overrides))


def test_bench_in_process(tmp_path, capsys):
    out = tmp_path / "bench.json"
    result = run(bench_cfg(*TINY, f"output={out}"))
    extra = {"cost_ratio", "threads", "compile", "channels_last", "fused_quant", "torch"}
    assert KEYS | extra <= set(result)
    for key in (
        "float_img_s",
        "search_img_s",
        "finetune_img_s",
        "search_ratio",
        "finetune_ratio",
        "cost_ratio",
    ):
        assert isinstance(result[key], float) and result[key] > 0, key
    assert (result["device"], result["model"], result["batch"]) == ("cpu", "res20", 8)
    chip = {f"{n}_ratio" for n in ("search_chip", "finetune_chip")}
    chip |= {f"{n}_noise_ratio" for n in ("search_chip", "finetune_chip")}
    assert chip <= set(result) and result["recalibrate_every"] == 8
    assert result["noise_generator"] == "counter"
    assert json.loads(out.read_text()) == result
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == result


def test_bench_fused_quant_key_switches_the_kernels():
    try:
        assert run(bench_cfg(*TINY, "fused_quant=false"))["fused_quant"] is False
        assert not fused.fused_enabled()
    finally:
        fused.set_fused(True)


def test_bench_noise_generator_key_switches_the_training_draws():
    try:
        assert run(bench_cfg(*TINY, "noise_generator=torch"))["noise_generator"] == "torch"
        assert training_draws() == "torch"
        with pytest.raises(ConfigError, match=r"^noise_generator='numpy' is not one of"):
            run(bench_cfg(*TINY, "noise_generator=numpy"))
    finally:
        set_training_draws("counter")


def test_bench_cuda_without_cuda_is_an_odimo_error(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(OdimoError, match="CUDA is not available"):
        run(bench_cfg(*TINY, "device=cuda"))


def test_bench_script_last_line_is_json():
    proc = subprocess.run(
        [sys.executable, str(REPO / "tasks" / "bench.py"), *TINY],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result) >= KEYS
    assert result["model"] == "res20" and result["batch"] == 8 and result["device"] == "cpu"
    assert result["search_ratio"] > 0 and result["finetune_ratio"] > 0


@pytest.mark.parametrize("value", ["-1", "abc", "1.5"])
def test_bench_bad_recalibrate_every_is_a_config_error(value):
    with pytest.raises(ConfigError, match="recalibrate_every must be an int >= 0"):
        run(bench_cfg(*TINY, f"recalibrate_every={value}"))
