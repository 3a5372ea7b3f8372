# SPDX-License-Identifier: Apache-2.0
"""Every file under conf/ composes into the task that uses it, resolves, keeps the type its
default documents, and has a comment on every key.

Table-driven: one composition per config file (and one per dataset x model x reg combination of
the main job), failures collected and reported together, so a new file or group is covered
without a new test and a broken one is named in one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, ListConfig, OmegaConf

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def _train_groups() -> tuple[str, ...]:
    """The groups of the main job: its defaults list, as conf/train.yaml names them."""
    names = []
    for entry in OmegaConf.load(CONF / "train.yaml").defaults:
        if OmegaConf.is_dict(entry):
            names += [str(k).removeprefix("optional ").strip() for k in entry]
    own = [g for g in names if not g.startswith(("override", "hydra"))]
    return tuple(g for g in own if (CONF / g).is_dir())


#: Groups of the main job, each composed once per option.
TRAIN_GROUPS = _train_groups()
TASKS = sorted(p.stem for p in CONF.glob("*.yaml"))


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _compose(config: str, *overrides: str, hydra: bool = False) -> DictConfig:
    extra = ["paths.run_dir=/tmp/run"] if config == "train" else []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config, overrides=[*extra, *overrides], return_hydra_config=hydra)


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf; missing (???) values are skipped."""
    if isinstance(node, DictConfig):
        for key in node:
            if OmegaConf.is_missing(node, key):
                continue
            yield from _leaves(node[key], f"{prefix}{key}.")
    elif not isinstance(node, ListConfig):
        yield prefix[:-1], node
    else:
        yield prefix[:-1], list(node)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _type_errors(cfg: DictConfig, reference: dict[str, Any], where: str) -> list[str]:
    """Keys whose value has another type than the default documents (null allowed both ways)."""
    errors = []
    for key, value in _leaves(cfg):
        comparable = key in reference and None not in (value, reference[key])
        if comparable and _kind(value) != _kind(reference[key]):
            errors.append(
                f"{where}: {key} is {_kind(value)} {value!r}, "
                f"the default is {_kind(reference[key])}"
            )
    return errors


def test_every_task_config_composes_and_resolves() -> None:
    failures = []
    for task in TASKS:
        try:
            cfg = _compose(task)
            OmegaConf.resolve(cfg)
        except Exception as err:  # noqa: BLE001 (collected and reported together)
            failures.append(f"conf/{task}.yaml: {err}".splitlines()[0])
    assert not failures, "\n".join(failures)


def test_every_group_option_composes_resolves_and_keeps_the_default_types() -> None:
    """Each option of each group of the main job, alone on top of the defaults."""
    reference = dict(_leaves(_compose("train")))
    assert isinstance(reference["strength"], float) and isinstance(reference["seed"], int)
    failures = []
    for group in TRAIN_GROUPS:
        assert _options(group), f"conf/{group}/ has no options"
        for option in _options(group):
            try:
                cfg = _compose("train", f"{group}={option}")
                OmegaConf.resolve(cfg)
            except Exception as err:  # noqa: BLE001
                failures.append(f"{group}={option}: {err}".splitlines()[0])
                continue
            failures += _type_errors(cfg, reference, f"{group}={option}")
            named = group in ("dataset", "model", "reg", "baseline", "platform")
            if named and cfg[group].name != option:
                failures.append(f"{group}={option}: its name is {cfg[group].name!r}")
    assert not failures, "\n".join(failures)


def _written_keys(group: str, option: str) -> set[str]:
    """Dotted keys one option of a group sets (under its group, or global: @package _global_)."""
    path = CONF / group / f"{option}.yaml"
    prefix = "" if "# @package _global_" in path.read_text().splitlines()[:3] else f"{group}."
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    raw.pop("defaults", None)

    def walk(node: Any, at: str) -> Iterator[str]:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                yield from walk(value, f"{at}{key}.")
        else:
            yield at[:-1]

    return set(walk(raw, prefix))


def test_dataset_model_reg_combinations_compose() -> None:
    """Each option composes alone (above); combined they can only break where two groups write
    the same key, so: no key is written by two of these groups, and one combination per row
    (options paired round-robin) composes with its input shape and class count well typed."""
    groups = ("dataset", "model", "reg")
    writers: dict[str, set[str]] = {}
    for group in groups:
        for option in _options(group):
            for key in _written_keys(group, option):
                writers.setdefault(key, set()).add(group)
    shared = {key: sorted(g) for key, g in writers.items() if len(g) > 1}
    assert not shared, shared
    options = [_options(g) for g in groups]
    failures = []
    for i in range(max(len(o) for o in options)):
        chosen = [f"{g}={o[i % len(o)]}" for g, o in zip(groups, options)]
        try:
            cfg = _compose("train", *chosen)
            OmegaConf.resolve(cfg)
        except Exception as err:  # noqa: BLE001
            failures.append(f"{' '.join(chosen)}: {err}".splitlines()[0])
            continue
        shape = list(cfg.dataset.input_size)
        if len(shape) != 3 or not all(isinstance(n, int) and n > 0 for n in shape):
            failures.append(f"{' '.join(chosen)}: input_size {shape} is not [C, H, W]")
        if not isinstance(cfg.dataset.num_classes, int) or cfg.dataset.num_classes < 2:
            failures.append(f"{' '.join(chosen)}: num_classes {cfg.dataset.num_classes!r}")
    assert not failures, "\n".join(failures)


def test_hydra_launchers_compose() -> None:
    for launcher in _options("hydra/launcher"):
        cfg = _compose("train", f"hydra/launcher={launcher}", hydra=True)
        assert cfg.hydra.launcher._target_.startswith("hydra_plugins."), launcher


def test_strength_from_the_command_line_is_a_float() -> None:
    """`strength=1e-6` reaches the job as the float 1e-6 (not the string YAML 1.1 would read)."""
    assert _compose("train", "strength=1e-6").strength == 1e-6
    assert isinstance(_compose("train", "strength=1e-6").strength, float)


def test_defaults_are_the_documented_ones() -> None:
    cfg = _compose("train")
    assert (cfg.dataset.name, cfg.model.name, cfg.reg.name) == ("digits", "res20", "latency")
    assert list(cfg.phases) == ["warmup", "search", "finetune"]
    assert cfg.search.temperature.initial == 1.0 and cfg.search.temperature.decay == 0.045
    assert cfg.search.optim.alpha.name == "adam" and cfg.search.optim.alpha.weight_decay == 0.0
    assert cfg.search.optim.weights.lr == 1e-3 and cfg.search.optim.weights.momentum == 0.9


def test_lambda_grids_are_ascending_from_zero_and_match_their_regularizer() -> None:
    grids = [g for g in _options("sweep") if not g.endswith("baselines")]
    assert len(grids) == 10
    for grid in grids:
        cfg = _compose("train", f"sweep={grid}", hydra=True)
        values = [float(v) for v in str(cfg.hydra.sweeper.params.strength).split(",")]
        assert values[0] == 0.0 and values == sorted(values), grid
        assert len(set(values)) == len(values), grid
        target = grid.rsplit("_", 1)[1]  # latency | power
        assert cfg.reg.name == target and cfg.sweep_name.endswith(f"_{target}"), grid


def test_every_config_file_is_composed_by_these_tests() -> None:
    """A new config group or file must be added to a composition above."""
    covered = {f"{t}.yaml" for t in TASKS}
    covered |= {f"{g}/{o}.yaml" for g in (*TRAIN_GROUPS, "hydra/launcher") for o in _options(g)}
    covered |= {"hydra/default.yaml", "hydra/help/task.yaml"}  # in every composition
    files = {p.relative_to(CONF).as_posix() for p in CONF.rglob("*.yaml")}
    files = {f for f in files if not f.startswith("local/")}  # git-ignored, per machine
    assert files <= covered, sorted(files - covered)


def test_every_key_of_every_config_file_is_commented() -> None:
    """House rule: each config file says what it is and every key has a comment."""
    failures = []
    for path in sorted(CONF.rglob("*.yaml")):
        lines = path.read_text().splitlines()
        if not (lines and lines[0].startswith("#")):
            failures.append(f"{path}: no header comment")
        for previous, line in zip(["#", *lines], lines):
            stripped = line.strip()
            if (
                not stripped
                or stripped.startswith(("#", "-"))
                or stripped.endswith(":")
                or "# " in line
                or previous.strip().startswith("#")
            ):
                continue
            failures.append(f"{path}: key without a comment: {line!r}")
    assert not failures, "\n".join(failures)
