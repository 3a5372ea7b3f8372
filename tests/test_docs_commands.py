# SPDX-License-Identifier: Apache-2.0
"""Every command shown in README.md and docs/*.md composes with the real configs.

Each `python train.py ...` / `python tasks/<x>.py ...` line of a fenced code block is composed
in-process with Hydra, as `--cfg job` would (a sweep line once per value of each swept key), so a
renamed key, a missing `+`, or a group choice that does not exist fails CI instead of a reader.
Placeholders such as `<run>` stand for paths the reader supplies; a command that needs a run
folder still composes. A platform installed by a `tasks/calibrate.py ... install=true` line of
the same docs is provided as a copy of DIANA's config for the lines that use it.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
ENTRY = re.compile(r"^(?:\.venv/bin/)?python3? (train\.py|tasks/(\w+)\.py)(?:\s|$)")
#: Hydra flags that change what is printed or launched, not the config.
FLAGS = {"-m", "--multirun", "--cfg", "job", "hydra", "all", "--resolve", "--help"}


def _blocks(text: str) -> list[list[str]]:
    """Lines of every fenced block in bash, sh or no language (continuation lines joined)."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    shell = False
    for line in text.splitlines():
        match = FENCE.match(line.strip())
        if match:
            if current is None:
                current, shell = [], match.group(1) in ("", "bash", "sh", "shell")
            else:
                blocks += [current] if shell else []
                current = None
        elif current is not None:
            if current and current[-1].endswith("\\"):
                current[-1] = current[-1][:-1] + " " + line.strip()
            else:
                current.append(line.strip())
    return [[ln for ln in block if ln] for block in blocks]


def _expand(line: str, variables: dict[str, str]) -> list[str]:
    """Shell words of a line: `$VAR` expanded, `<placeholder>` made one word, comment dropped."""
    line = re.sub(r"<[^<>]*>", "PLACEHOLDER", line)
    line = re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), m.group(0)), line)
    return shlex.split(line, comments=True)


def _commands() -> list[tuple[str, str, list[str]]]:
    """(readable id, config name, overrides) of every task command in the docs (each part of
    a `cmd && cmd` line on its own, as in the set-up commands)."""
    found = []
    for page in PAGES:
        for block in _blocks(page.read_text()):
            variables: dict[str, str] = {}
            for line in (part.strip() for ln in block for part in ln.split("&&")):
                assign = re.match(r'^(\w+)="([^"]*)"$', line)
                if assign:
                    variables[assign.group(1)] = assign.group(2)
                    continue
                match = ENTRY.match(line)
                if not match:
                    continue
                name = match.group(2) or "train"
                words = _expand(line, variables)[2:]
                ident = f"{page.name}:{' '.join([match.group(1), *words])[:120]}"
                found.append((ident, name, [w for w in words if w not in FLAGS]))
    return found


COMMANDS = _commands()


def _installed_platforms() -> set[str]:
    """Platform names a `tasks/calibrate.py ... install=true` line of the docs writes."""
    names = set()
    for _, config, words in COMMANDS:
        if config == "calibrate" and "install=true" in words:
            names |= {w.split("=", 1)[1] for w in words if w.startswith("name=")}
    return names


def _runs(overrides: list[str]) -> list[list[str]]:
    """One override list per value of each swept key (the others at their first value)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    first = [
        f"{o.get_key_element()}={next(o.sweep_string_iterator())}"
        if o.is_sweep_override()
        else o.input_line
        for o in parsed
    ]
    runs = [first]
    for i, o in enumerate(parsed):
        if o.is_sweep_override():
            for value in list(o.sweep_string_iterator())[1:]:
                runs.append([*first[:i], f"{o.get_key_element()}={value}", *first[i + 1 :]])
    return runs


def test_the_docs_show_commands_of_every_entry_point() -> None:
    """The collector finds the commands (a broken parser would silently test nothing)."""
    names = {name for _, name, _ in COMMANDS}
    entries = {"train"} | {p.stem for p in (REPO / "tasks").glob("*.py")}
    assert names == entries, sorted(entries - names)
    assert len(COMMANDS) >= 40


def _param(ident: str, name: str, words: list[str]):
    """A test case named after the page and the command."""
    return pytest.param(name, words, id=ident)


@pytest.mark.parametrize(
    ("config", "overrides"), [_param(ident, name, words) for ident, name, words in COMMANDS]
)
def test_docs_command_composes(config: str, overrides: list[str], tmp_path: Path) -> None:
    extra = []
    chosen = {w.removeprefix("platform=") for w in overrides if w.startswith("platform=")}
    installed = _installed_platforms() & chosen
    if installed:
        (tmp_path / "platform").mkdir()
        for name in installed:
            shutil.copy(CONF / "platform" / "diana.yaml", tmp_path / "platform" / f"{name}.yaml")
        extra = [f"hydra.searchpath=[file://{tmp_path}]"]
    for run in _runs(overrides):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name=config, overrides=[*run, *extra])
        assert OmegaConf.to_yaml(cfg)  # what --cfg job prints


def test_every_relative_link_of_the_docs_exists() -> None:
    """Links and pictures between README.md and docs/ point to files that exist."""
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken


def test_the_readme_maps_every_package_and_every_task() -> None:
    """A package or an entry point added later must appear in the README's maps."""
    readme = (REPO / "README.md").read_text()
    odimo = REPO / "odimo"
    packages = [f"`{p.name}/`" for p in odimo.iterdir() if (p / "__init__.py").is_file()]
    modules = [f"`{p.name}`" for p in odimo.glob("*.py") if p.name != "__init__.py"]
    tasks = [f"`tasks/{p.name}`" for p in (REPO / "tasks").glob("*.py")]
    missing = [name for name in [*packages, *modules, *tasks, "`train.py`"] if name not in readme]
    assert not missing, missing
