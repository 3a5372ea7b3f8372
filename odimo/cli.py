# SPDX-License-Identifier: Apache-2.0
"""Shared plumbing of the entry points (`train.py`, `tasks/*.py`).

Every entry point is a thin `@hydra.main` around a pure `run(cfg)` function. This module adds
what Hydra does not do for us: an unknown group choice (`model=foo`) or an `OdimoError` raised
by the task is reported as ONE line on stderr with exit code 2, instead of a stack trace; and
`--help` names the task, its own keys and the groups it uses (`task_help`, read from
`conf/<task>.yaml` itself, so the help cannot drift from the config).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from odimo.errors import OdimoError
from odimo.hw.config import user_config_dir

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

#: Config groups whose choices are checked before Hydra starts (name in the override -> folder).
CHECKED_GROUPS = (
    "dataset",
    "model",
    "reg",
    "baseline",
    "platform",
    "trainer",
    "logger",
    "sweep",
    "experiment",
)


def fail(message: str, code: int = 2) -> None:
    """Print one line to stderr and exit."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


#: Characters of a path that Hydra's override grammar would read as syntax (a sweep run's
#: folder is named `key=value,key=value`).
_GRAMMAR = frozenset("=, \t'\"[]{}()")


#: A Hydra sweep or cast function as a whole value: `choice(a,b)`, `glob(*)`, `range(1,3)`.
_SWEEP_FUNCTION = re.compile(r"^[A-Za-z_]\w*\(.*\)$")


def _is_path_key(key: str) -> bool:
    last = key.lstrip("+~").rsplit(".", 1)[-1]
    return last.endswith("_dir") or last in ("output", "big", "little")


def _is_group_key(key: str) -> bool:
    """A config group choice (`model=`, `hydra/launcher=`), whose `,` is a sweep."""
    key = key.lstrip("+~").split("@", 1)[0]
    return "/" in key or key in CHECKED_GROUPS or key.startswith("hydra.")


def _escape_before_quote(match: re.Match) -> str:
    return match.group(1) * 2 + ("\\'" if match.group(2) else "")


def quote_paths(argv: Sequence[str]) -> list[str]:
    """The command-line overrides with path values quoted for Hydra's grammar.

    A value holding a path (a `/`, or a `*_dir`, `output`, `big` or `little` key) with `=`, `,`,
    blanks, quotes or brackets in it (as every sweep run's folder has: `baseline=all_analog,...`)
    is wrapped in single quotes, so `run_dir=outputs/sweeps/s/baseline=all_analog,seed=1` names
    that folder instead of failing to parse or starting a sweep over its pieces. Values already
    quoted, lists, dicts, interpolations, sweep functions (`choice(a/x,b/y)`: the way to sweep over
    paths), group choices and `hydra.*` keys are left as they are.

    >>> quote_paths(["run_dir=out/s/a=1,b=2", "seed=1,2", "sigmas=[0,1]", "run_dir='x=y'"])
    ["run_dir='out/s/a=1,b=2'", 'seed=1,2', 'sigmas=[0,1]', "run_dir='x=y'"]
    """
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if (
            sep
            and not arg.startswith("-")
            and not _is_group_key(key)
            and value
            and value[0] not in "'\"[{"
            and "${" not in value
            and not _SWEEP_FUNCTION.match(value)
            and ("/" in value or _is_path_key(key))
            and any(c in _GRAMMAR for c in value)
        ):
            # in a quoted value a backslash escapes only a quote or another backslash before one
            escaped = re.sub(r"(\\*)('|$)", _escape_before_quote, value)
            arg = f"{key}='{escaped}'"
        out.append(arg)
    return out


def unknown_group_choice(
    argv: Sequence[str], conf_dir: Path = CONF_DIR, extra_roots: Sequence[Path] = ()
) -> str | None:
    """Return a one-line message for the first `group=choice` override with no config file.

    Handles `+group=`, `++group=`, `group@pkg=` and multirun lists (`model=res20,res18`).
    Sweep functions (`choice(...)`, `range(...)`) and interpolations are left to Hydra.
    """
    for arg in argv:
        if "=" not in arg or arg.startswith("hydra."):
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~").split("@", 1)[0]
        if key not in CHECKED_GROUPS or not (conf_dir / key).is_dir():
            continue
        if "(" in value or "$" in value or value in ("", "null"):
            continue
        folders = [conf_dir / key, *(root / key for root in extra_roots)]
        for choice in value.split(","):
            choice = choice.strip()
            if choice and not any((d / f"{choice}.yaml").is_file() for d in folders):
                options = sorted({p.stem for d in folders for p in d.glob("*.yaml")})
                return f"unknown {key} '{choice}' (choose from: {', '.join(options)})"
    return None


def _entry_command(config_name: str) -> str:
    """How a user starts the task (train.py at the root, the others under tasks/)."""
    return "python train.py" if config_name == "train" else f"python tasks/{config_name}.py"


def _top_level_blocks(lines: list[str]) -> list[tuple[str, list[str]]]:
    """Split a config's body into (top-level key, its lines with the comments above it)."""
    blocks: list[tuple[str, list[str]]] = []
    pending: list[str] = []
    for line in lines:
        top = line[:1] not in ("", " ", "#", "-") and ":" in line
        if top:
            blocks.append((line.split(":", 1)[0].strip(), [*pending, line]))
            pending = []
        elif line[:1] in (" ", "-") and blocks and not pending:
            blocks[-1][1].append(line)
        elif line.strip():
            pending.append(line)
    return blocks


def _groups_used(path: Path, conf_dir: Path) -> list[str]:
    """One line per config group of the task's defaults list: its default and its choices."""
    rows = []
    for entry in OmegaConf.load(path).get("defaults", []):
        if not isinstance(entry, dict) and not OmegaConf.is_dict(entry):
            continue
        for key, default in entry.items():
            group = str(key).removeprefix("optional ").strip()
            if group.startswith(("override", "hydra")) or not (conf_dir / group).is_dir():
                continue
            choices = sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))
            shown = "null" if default is None else default
            rows.append(f"  {group}={shown}  (choices: {', '.join(choices)})")
    return rows


def task_help(config_name: str, conf_dir: Path = CONF_DIR) -> str:
    """The `--help` text of one task: its purpose and usage (the header comment of
    conf/<task>.yaml), its own keys with their comments, and the groups it uses."""
    path = conf_dir / f"{config_name}.yaml"
    lines = [ln for ln in path.read_text().splitlines() if "SPDX-License-Identifier" not in ln]
    start = next(i for i, ln in enumerate(lines) if not ln.startswith("#"))
    header = [ln.lstrip("# ").rstrip() for ln in lines[:start] if ln.strip("# ")]
    keys = [
        line
        for key, block in _top_level_blocks(lines[start:])
        if key not in ("defaults", "hydra")
        for line in block
    ]
    groups = _groups_used(path, conf_dir)
    text = [
        f"{config_name}: {header[0] if header else ''}",
        *(f"  {ln}" for ln in header[1:]),
        "",
        f"Usage: {_entry_command(config_name)} [key=value ...] [group=choice ...]",
        "",
        f"== Keys (conf/{config_name}.yaml; nested ones as a.b=value) ==",
        *keys,
    ]
    if groups:
        text += ["", "== Config groups (group=choice) ==", *groups]
    text += [
        "",
        "--cfg job prints the composed config without running; -m runs a sweep;",
        "--hydra-help lists Hydra's own options.",
    ]
    return "\n".join(text) + "\n"


def _help_template(config_name: str) -> str:
    """`hydra.help.template` of conf/hydra/help/task.yaml ($ escaped: Hydra substitutes $NAMES)."""
    return task_help(config_name).replace("$", "$$")


OmegaConf.register_new_resolver("odimo_help", _help_template, replace=True)


def quiet_libraries() -> None:
    """Silence library chatter that says nothing about the run (device banners, tips)."""
    import logging
    import warnings

    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch.accelerators.cuda",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    # the compiler of the fused quantizer kernels notes a missing CUDA runtime on CPU machines
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*litlogger.*")


def stop_on_sigterm() -> None:
    """Make SIGTERM stop the process like Ctrl-C (KeyboardInterrupt), sweeps included.

    Without this, a terminated DataLoader worker surfaces as an error of the current job, which a
    sweep records and moves past. Lightning keeps calling this handler after its own while it
    trains; an interrupted job leaves no FAILED marker and resumes from `last.ckpt` on a re-run.
    """
    import signal

    def _handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"terminated by signal {signum}")

    signal.signal(signal.SIGTERM, _handler)


def run_entry(config_name: str, task: Callable[[Any], Any], conf_dir: Path = CONF_DIR) -> None:
    """Run `task(cfg)` under `@hydra.main` with one-line error reporting."""
    import hydra

    quiet_libraries()
    stop_on_sigterm()
    sys.argv[1:] = quote_paths(sys.argv[1:])
    user_root = user_config_dir()
    message = unknown_group_choice(sys.argv[1:], conf_dir, extra_roots=(user_root,))
    if message:
        fail(message)
    if (user_root / "platform").is_dir() and not any(
        a.startswith("hydra.searchpath") for a in sys.argv[1:]
    ):  # the user's installed platforms are choices of the `platform` group
        sys.argv.insert(1, f"hydra.searchpath=[file://{user_root}]")

    @hydra.main(version_base="1.3", config_path=str(conf_dir), config_name=config_name)
    def _main(cfg: Any) -> Any:
        try:
            return task(cfg)
        except OdimoError as err:
            fail(str(err))

    _main()
