# SPDX-License-Identifier: Apache-2.0
"""Layer geometry records and the vectorised geometry table."""

from __future__ import annotations

import torch
from torch import nn

from odimo.hw import GeometryTable, LayerGeometry, record_geometry


def test_layer_geometry_grouped_flag_and_dict():
    g = LayerGeometry("a", 8, 8, 3, 3, 1, 8, 12, 12)
    assert g.is_grouped
    assert not LayerGeometry("b", 8, 16, 1, 1, 1, 1, 12, 12).is_grouped
    assert g.as_dict() == {
        "name": "a",
        "c_in": 8,
        "c_out": 8,
        "k_x": 3,
        "k_y": 3,
        "stride": 1,
        "groups": 8,
        "o_x": 12,
        "o_y": 12,
        "operator_choice": False,
    }


def test_geometry_table_holds_one_tensor_per_field():
    layers = [
        LayerGeometry("a", 3, 16, 3, 3, 1, 1, 32, 32),
        LayerGeometry("b", 16, 16, 1, 5, 2, 16, 16, 8),
    ]
    table = GeometryTable(layers)
    assert len(table) == 2
    assert table.names == ("a", "b")
    assert table.c_in.tolist() == [3.0, 16.0]
    assert table.k_x.tolist() == [3.0, 1.0] and table.k_y.tolist() == [3.0, 5.0]
    assert table.groups.tolist() == [1.0, 16.0]
    assert table.o_x.tolist() == [32.0, 16.0] and table.o_y.tolist() == [32.0, 8.0]
    assert table.c_in.dtype == torch.float32
    t64 = table.to(dtype=torch.float64)
    assert t64.c_out.dtype == torch.float64 and t64.names == table.names


class _TwoCalls(nn.Module):
    """A conv applied twice, a rectangular kernel and input, and an exempt conv."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, kernel_size=(3, 5), stride=2, padding=(1, 2))
        self.b = nn.Conv2d(4, 4, 1)
        self.skip = nn.Conv2d(4, 4, 1)
        self.skip.cost_exempt = True

    def forward(self, x):
        x = self.b(self.b(self.a(x)))
        return self.skip(x)


def test_record_geometry_width_height_order_and_single_record():
    model = _TwoCalls().train()
    geo = record_geometry(model, (3, 10, 20))  # H=10, W=20
    assert [g.name for g in geo] == ["a", "b"]  # b recorded once, exempt conv skipped
    a = geo[0]
    assert (a.k_y, a.k_x) == (3, 5)
    assert (a.o_y, a.o_x) == (5, 10)  # o_x is the output width
    assert a.stride == 2 and a.groups == 1 and (a.c_in, a.c_out) == (3, 4)
    assert model.training  # mode restored
    # no hooks left behind
    assert all(not m._forward_hooks for m in model.modules())
