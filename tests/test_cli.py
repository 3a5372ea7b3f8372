# SPDX-License-Identifier: Apache-2.0
"""`--help` of every entry point names its task, its own keys and only the groups it uses; path
values reach the task as written."""

from __future__ import annotations

import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

import odimo.cli  # noqa: F401  (registers the resolver the help template uses)
from odimo.cli import quote_paths

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def _entry_configs() -> dict[str, str]:
    """Entry file -> config name, read from each file's `run_entry("<name>", ...)` call."""
    found = {}
    for path in [REPO / "train.py", *sorted((REPO / "tasks").glob("*.py"))]:
        match = re.search(r'run_entry\("(\w+)"', path.read_text())
        assert match, f"{path} does not call run_entry"
        found[path.relative_to(REPO).as_posix()] = match.group(1)
    return found


ENTRIES = _entry_configs()


def _own_keys_and_groups(config: str) -> tuple[list[str], list[str]]:
    """Top-level keys of conf/<config>.yaml (not defaults/hydra) and the groups its defaults use."""
    raw = OmegaConf.load(CONF / f"{config}.yaml")
    keys = [k for k in raw if k not in ("defaults", "hydra")]
    groups = []
    for entry in raw.get("defaults", []):
        if OmegaConf.is_dict(entry):
            for key in entry:
                group = str(key).removeprefix("optional ").strip()
                if not group.startswith(("override", "hydra")) and (CONF / group).is_dir():
                    groups.append(group)
    return keys, groups


def _help_as_hydra_prints_it(config: str) -> str:
    """The composed `hydra.help.template`, substituted as Hydra's `--help` does."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config, return_hydra_config=True)
    template = string.Template(cfg.hydra.help.template)
    empty = dict.fromkeys(("FLAGS_HELP", "HYDRA_CONFIG_GROUPS", "APP_CONFIG_GROUPS", "CONFIG"), "")
    return template.substitute(empty)


@pytest.mark.parametrize(("entry", "config"), sorted(ENTRIES.items()))
def test_help_names_the_task_its_keys_and_its_groups(entry: str, config: str) -> None:
    text = _help_as_hydra_prints_it(config)
    lines = text.splitlines()
    assert lines[0].startswith(f"{config}: ") and len(lines[0]) > len(config) + 10
    assert f"Usage: python {entry} " in text
    keys, groups = _own_keys_and_groups(config)
    assert keys, f"conf/{config}.yaml has no keys of its own"
    for key in keys:
        assert any(ln.startswith(f"{key}:") for ln in lines), f"--help of {entry} misses {key}"
    group_part = text.partition("== Config groups")[2]
    listed = {m.group(1) for m in re.finditer(r"^  ([\w/]+)=", group_part, re.MULTILINE)}
    assert listed == set(groups)  # its own groups, not train's
    assert "powered by Hydra" not in text


def test_help_keeps_comments_and_interpolations_verbatim() -> None:
    text = _help_as_hydra_prints_it("cascade")
    assert re.search(r"^thresholds: 2001 +# thresholds evenly spaced over \[0, 1\]", text, re.M)
    # a `$` survives Hydra's $NAME substitution as written in the YAML
    assert "\nname: ${platform.name}_calibrated " in _help_as_hydra_prints_it("calibrate")


def test_help_from_the_command_line(tmp_path: Path) -> None:
    """End to end through `@hydra.main`: exit 0, the task's own text (not Hydra's default)."""
    out = subprocess.run(
        [sys.executable, "tasks/pareto.py", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("pareto: Pareto task (tasks/pareto.py)")
    assert "\nsweep_dir: ???" in out.stdout and "dataset=" not in out.stdout


@pytest.mark.parametrize(
    "path",
    [
        "outputs/sweeps/s/baseline=all_analog,seed=1,sweep=baselines,t~16db35e0",
        "/tmp/a b/it's (x)[1]{2}",
        r"C:\runs\a=1",
        "a=b\\",
        "a=b\\'c",
    ],
)
def test_a_path_value_reaches_the_task_as_written(path: str) -> None:
    """What Hydra's own parser makes of the quoted override is the path itself: a sweep run's
    folder (`key=value,...`) is one value, not a parse error or a sweep over its pieces."""
    (arg,) = quote_paths([f"run_dir={path}"])
    (override,) = OverridesParser.create().parse_overrides([arg])
    assert not override.is_sweep_override()
    assert override.value() == path


def test_group_choices_lists_and_quoted_values_are_left_alone() -> None:
    kept = [
        "model=res20,res18",
        "hydra/launcher=submitit_slurm",
        "seed=1,2",
        "sigmas=[0,0.5,1]",
        "run_dir='a=b'",
        "paths.output_dir=${oc.env:HOME}/x,y",
        "hydra.sweep.dir=multirun/a=b",
        "run_dir=choice(out/a,out/b)",
        "-m",
    ]
    assert quote_paths(kept) == kept
    assert quote_paths(["paths.output_dir=/data/a,b", "out_dir=x y"]) == [
        "paths.output_dir='/data/a,b'",
        "out_dir='x y'",
    ]


def test_a_sweep_run_folder_on_the_command_line(tmp_path: Path) -> None:
    """End to end: the task gets the whole folder name (here: no finished run in it)."""
    run_dir = tmp_path / "s" / "baseline=all_analog,seed=1,sweep=baselines"
    run_dir.mkdir(parents=True)
    out = subprocess.run(
        [sys.executable, "tasks/chip_eval.py", f"run_dir={run_dir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip() == f"error: {run_dir} has no final/model.pt: is it a finished run?"
