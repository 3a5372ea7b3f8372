# SPDX-License-Identifier: Apache-2.0
"""The search's hand-over policy: which epoch's network the fine-tune gets, and how its mapping
is finished (projection onto a cost target, slack filling).

Pure functions over plain records (`{"epoch", "acc", "cost", "stored"}`, one per validated
epoch) and over a network's cost model; the Lightning callback
(`odimo.callbacks.MappingHandover`) records the epochs, keeps the candidates' weights on disk and
calls these.

Rules of `select_epoch`:

- ``best_within_final`` (default): the most accurate epoch among those whose hard cost is at
  most the bound (the final epoch's cost, or the target), i.e. the mapping the cost term settled
  on, not an early, less compressed one (which the best-accuracy rule favours at a large λ);
- ``final``: the last epoch;
- ``best_hard``: the most accurate epoch overall.
"""

from __future__ import annotations

from odimo.errors import ConfigError
from odimo.nn.network_cost import NetworkCost
from odimo.nn.projection import project_to_target
from odimo.nn.slack import fill_slack

HANDOVER_RULES = ("best_within_final", "final", "best_hard")
#: Relative tolerance of "cost within the bound" (float round-off of the cost sums).
BOUND_RTOL = 1e-9


def check_rule(rule: str) -> str:
    """The rule, or ConfigError naming the key and the choices."""
    if rule not in HANDOVER_RULES:
        raise ConfigError(
            f"search.handover must be one of {', '.join(HANDOVER_RULES)}, got {rule!r}"
        )
    return rule


def beats(a: dict, b: dict) -> bool:
    """`a` is at least as good as `b` on cost and accuracy (and is another record)."""
    return a["cost"] <= b["cost"] and a["acc"] >= b["acc"] and a is not b


def update_front(records: list[dict], new: dict) -> tuple[list[dict], list[int]]:
    """Add `new` (replacing a record of the same epoch) and keep the non-dominated candidates.

    Marks `new["stored"]` when no stored record beats it, and un-marks the stored records it
    beats. Returns the records and the epochs whose stored weights can be deleted.
    """
    records = [r for r in records if r["epoch"] != new["epoch"]] + [new]
    stored = [r for r in records if r.get("stored")]
    dropped: list[int] = []
    if not any(beats(r, new) for r in stored):
        new["stored"] = True
        for r in stored:
            if beats(new, r):
                r["stored"] = False
                dropped.append(r["epoch"])
    return records, dropped


def select_epoch(
    records: list[dict], rule: str, target: float | None = None
) -> tuple[dict | None, dict]:
    """(the chosen record, a report) under `rule`; the bound is `target` if given.

    Only stored records (whose weights were kept) and the final epoch can be chosen; when
    none is within the bound, the cheapest stored record is chosen.
    """
    check_rule(rule)
    if not records:
        return None, {"rule": rule}
    records = sorted(records, key=lambda r: r["epoch"])
    final = records[-1]
    bound = target if target is not None else final["cost"]
    if rule == "final":
        pool = [final]
    elif rule == "best_hard":
        pool = records
    else:
        pool = [r for r in records if r["cost"] <= bound * (1 + BOUND_RTOL)]
    stored = [r for r in pool if r.get("stored") or r is final]
    if not stored:  # nothing meets the target: the cheapest epoch
        stored = [min((r for r in records if r.get("stored")), key=lambda r: r["cost"])]
    chosen = max(stored, key=lambda r: (r["acc"], -r["cost"], r["epoch"]))
    report = {"rule": rule, "chosen_epoch": chosen["epoch"], "final_epoch": final["epoch"]}
    report.update({"bound": bound, "epochs": records})
    return chosen, report


def hard_cost(network: NetworkCost, regularizer=None) -> float:
    """Hard cost of the regularised quantity (latency cycles without a regularizer)."""
    if regularizer is not None:
        return regularizer.hard_cost(network)
    return float(network(soft=False).total_latency_cycles)


def finish_mapping(
    network: NetworkCost,
    regularizer=None,
    target: float | None = None,
    project: bool = False,
    fill: str | None = None,
) -> dict:
    """Finish the handed-over mapping in place (edits α) and report what changed.

    With `project` and a target, channels move onto the target
    (`odimo.nn.projection.project_to_target`); with `fill` ("latency"/"energy"), slack
    channels move to the precise unit (`odimo.nn.slack.fill_slack`). The report holds the
    handed-over cost and, with a target, whether it is met.
    """
    report: dict = {}
    if project and target is not None:
        report["target_projection"] = project_to_target(network, regularizer, target)
    if fill is not None:
        report["slack_filled"] = {"objective": fill, "channels": fill_slack(network, fill)}
    report["handed_over_cost"] = hard_cost(network, regularizer)
    if target is not None:
        report["target"] = target
        report["target_met"] = report["handed_over_cost"] <= target * (1 + BOUND_RTOL)
    return report
