# SPDX-License-Identifier: Apache-2.0
"""Where the quantized forms quantize, and the names every new module gets (see `graph`).

A *grid class* is one activation quantizer of the quantized forms. `plan_quantizers` walks the
classified graph once and decides, per node, which class its values lie on (if any), which
class each conv, add and global pool reads with, and where a quantizer must be inserted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import fx

from odimo.convert.trace import holds_tensors


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def add(self, a: str) -> str:
        self.parent.setdefault(a, a)
        return a

    def find(self, a: str) -> str:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:  # the earlier class (smaller rank in creation order) stays the root
            first, second = sorted((ra, rb), key=list(self.parent).index)
            self.parent[second] = first


@dataclass
class QuantPlan:
    """Grid classes of a converted network.

    Attributes:
        grid: node name -> class its values are on (absent: on no grid).
        layer_quant: conv/linear node -> class of its input quantizer.
        insert: node name -> inserted class applied to that node's output before a conv.
        add_quant, pool_quant: add / global-pool node -> class it quantizes with.
        from_input: inserted classes that quantize the image (initial clip 1, not 6).
        rectified: nodes whose possibly negative float values an inserted quantizer clamps at 0.
    """

    classes: _UnionFind = field(default_factory=_UnionFind)
    grid: dict[str, str] = field(default_factory=dict)
    layer_quant: dict[str, str] = field(default_factory=dict)
    insert: dict[str, str] = field(default_factory=dict)
    add_quant: dict[str, str] = field(default_factory=dict)
    pool_quant: dict[str, str] = field(default_factory=dict)
    from_input: set[str] = field(default_factory=set)
    rectified: list[str] = field(default_factory=list)

    def root(self, cls: str) -> str:
        return self.classes.find(cls)

    def on_grid(self, node: fx.Node) -> str | None:
        cls = self.grid.get(node.name)
        return None if cls is None else self.root(cls)


def _first_tensor(node: fx.Node) -> fx.Node:
    return next(a for a in node.all_input_nodes if holds_tensors(a))


def _layer_input(plan: QuantPlan, node: fx.Node, x: fx.Node, derived: dict, nonneg: dict) -> None:
    """The class a conv/linear reads with: its input's grid, or a quantizer inserted there."""
    cls = plan.on_grid(x)
    if cls is None:
        if x.name not in plan.insert:
            plan.insert[x.name] = plan.classes.add(f"in:{x.name}")
            if derived.get(x.name):
                plan.from_input.add(plan.insert[x.name])
            elif not nonneg.get(x.name):
                plan.rectified.append(x.name)
        cls = plan.insert[x.name]
    plan.layer_quant[node.name] = cls


def plan_quantizers(gm: fx.GraphModule, kinds: dict[str, str]) -> QuantPlan:
    """Walk the graph in execution order and place every quantizer (module doc of `graph`)."""
    plan = QuantPlan()
    derived: dict[str, bool] = {}  # the value is the image, moved or selected only
    nonneg: dict[str, bool] = {}  # non-negative in the float network (images are in [0, 1])
    for node in gm.graph.nodes:
        kind = kinds[node.name]
        tensors = [a for a in node.all_input_nodes if holds_tensors(a)]
        if kind == "input":
            derived[node.name] = nonneg[node.name] = True
        elif kind in ("conv", "linear"):
            _layer_input(plan, node, tensors[0], derived, nonneg)
        elif kind == "act":
            nonneg[node.name] = True
            cls = plan.on_grid(tensors[0])
            plan.grid[node.name] = cls or plan.classes.add(f"act:{node.name}")
        elif kind == "add":
            a, b = (plan.on_grid(t) for t in tensors[:2])
            shared = a if a is not None and (b is None or a == b) else b if a is None else None
            plan.add_quant[node.name] = shared or plan.classes.add(f"add:{node.name}")
            nonneg[node.name] = all(nonneg.get(t.name, False) for t in tensors)
        elif kind == "gpool":
            cls = plan.on_grid(tensors[0]) or plan.classes.add(f"pool:{node.name}")
            plan.pool_quant[node.name] = plan.grid[node.name] = cls
            nonneg[node.name] = True
        elif kind == "cat":
            grids = [plan.on_grid(t) for t in tensors]
            if grids and all(g is not None for g in grids):
                for g in grids[1:]:
                    plan.classes.union(grids[0], g)
                plan.grid[node.name] = grids[0]
            nonneg[node.name] = all(nonneg.get(t.name, False) for t in tensors)
            derived[node.name] = all(derived.get(t.name, False) for t in tensors)
        elif kind in ("keep", "float") and tensors:
            if kind == "keep" and plan.on_grid(tensors[0]) is not None:
                plan.grid[node.name] = plan.on_grid(tensors[0])
            nonneg[node.name] = nonneg.get(tensors[0].name, False)
            derived[node.name] = derived.get(tensors[0].name, False)
    return plan
