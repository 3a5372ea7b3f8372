# SPDX-License-Identifier: Apache-2.0
"""Operator-choice slots (Darkside): each channel a full conv or its own depthwise filter."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from odimo.hw import get_platform
from odimo.models import build_model
from odimo.models.build import ModelSpec, fold_float_into, to_mapped
from odimo.nn import NetworkCost, apply_mapping, hard_mapping, search_layers
from odimo.nn.baselines import baseline_mapping
from odimo.nn.operator_split import (
    MappedOperatorConv2d,
    OperatorChoiceConv2dBN,
    SearchOperatorConv2d,
    embed_depthwise,
)
from odimo.quant import UintActPact

SPEC = ModelSpec("darkside_mbv1", (3, 32, 32), 10, (("width", 8),))


def test_embedded_depthwise_filter_is_the_depthwise_conv():
    # Small integers in float64: every partial sum is exact, so the two convolutions agree
    # bit for bit whatever order the backend's algorithm accumulates in.
    torch.manual_seed(0)
    dw = torch.randint(-8, 9, (6, 1, 3, 3)).double()
    x = torch.randint(-8, 9, (2, 6, 5, 5)).double()
    full = F.conv2d(x, embed_depthwise(dw), padding=1)
    assert torch.equal(full, F.conv2d(x, dw, padding=1, groups=6))


def test_mapped_slot_computes_conv_channels_and_depthwise_channels_exactly():
    torch.manual_seed(0)
    platform = get_platform("darkside")
    act = UintActPact(6.0, bits=8)
    layer = MappedOperatorConv2d(8, 8, 3, platform=platform, input_quant=act)
    layer.init_quantizers()
    assignment = torch.tensor([0, 1, 0, 1, 1, 0, 0, 1])
    layer.set_assignment(assignment)
    layer.eval()
    x = act(torch.rand(2, 8, 6, 6) * 6)
    y = layer(x)
    w_c, b_c = layer.unit_weight_bias(0)
    w_d, b_d = layer.unit_weight_bias(1)
    conv = F.conv2d(x.double(), w_c.double(), b_c.double(), padding=1)
    depth = F.conv2d(
        x.double(),
        w_d.double().diagonal(dim1=0, dim2=1).permute(2, 0, 1).unsqueeze(1),
        b_d.double(),
        padding=1,
        groups=8,
    )
    ref = torch.where(assignment.bool().view(1, -1, 1, 1), depth, conv)
    assert (y.double() - ref).abs().max() < 1e-5
    assert not torch.equal(conv[:, 1], depth[:, 1])  # the two operators really differ


def test_float_warmup_folds_both_branches_and_mapped_equals_hard_search():
    torch.manual_seed(0)
    platform = get_platform("darkside")
    float_model = build_model(SPEC, "float")
    slots = [m for m in float_model.modules() if isinstance(m, OperatorChoiceConv2dBN)]
    assert len(slots) == 8
    float_model.eval()
    search = build_model(SPEC, "search", platform)
    fold_float_into(search, float_model)
    layer = search_layers(search)[0]
    assert isinstance(layer, SearchOperatorConv2d)
    dw_w, dw_b = slots[0].dw.folded()
    assert torch.equal(layer.dw_weight, dw_w) and torch.equal(layer.dw_bias, dw_b)
    geometry = NetworkCost(search, platform, SPEC.input_size).geometry
    apply_mapping(search, baseline_mapping("even_split", geometry, platform, None))
    x = torch.rand(3, *SPEC.input_size)
    search.eval()
    with hard_mapping(search):
        y_search = search(x)
    mapped = to_mapped(search, platform).eval()
    assert torch.equal(mapped(x), y_search)


def _alpha_steps(sign: float, steps: int = 40) -> torch.Tensor:
    """Counts per unit of the 8 slots after Adam on α of sign × soft latency, from an even
    split (hard argmax counts)."""
    torch.manual_seed(0)
    platform = get_platform("darkside")
    model = build_model(SPEC, "search", platform)
    network = NetworkCost(model, platform, SPEC.input_size)
    apply_mapping(model, baseline_mapping("even_split", network.geometry, platform, None), 0.05)
    layers = search_layers(model)
    for layer in layers:
        layer.sampling = "hard"
    opt = torch.optim.Adam([layer.alpha for layer in layers], lr=0.05)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        (sign * network(soft=True).total_latency_cycles / 1e5).backward()
        opt.step()
    return torch.stack([layer.unit_counts(soft=False) for layer in layers]).sum(0)


def test_channels_move_both_ways_from_an_even_split():
    """The reference's pitfall (α stuck at 0) would freeze one direction: here a cost that
    favours the DWE moves channels to it, one that favours the cluster moves them back."""
    start = torch.tensor([0.0, 0.0])
    model = build_model(SPEC, "search", get_platform("darkside"))
    for layer in search_layers(model):
        start += torch.tensor(
            [layer.out_channels // 2, layer.out_channels - layer.out_channels // 2]
        )
    to_dwe, to_cluster = _alpha_steps(+1.0), _alpha_steps(-1.0)
    assert to_dwe[1] > start[1] + 20 and to_cluster[0] > start[0] + 20


def test_depthwise_unit_quantizes_its_filters_as_the_embedded_weight():
    """The shortcut (quantize the C filters, then embed) equals quantizing the embedded C x C
    weight: same forward and same gradients for every parameter of the searched slot."""
    from odimo.nn.conv import QuantConv2d

    torch.manual_seed(0)
    platform = get_platform("darkside")
    act = UintActPact(6.0, bits=8)
    layer = SearchOperatorConv2d(8, 8, 3, 1, 1, platform=platform, input_quant=act)
    layer.init_quantizers()
    with torch.no_grad():
        layer.alpha.normal_()
        layer.weight_quants[1].log2_range.sub_(1.0)  # some filters now clip at the range
    x = torch.rand(2, 8, 5, 5) * 6

    def grads(weight_bias) -> dict[str, torch.Tensor]:
        layer.zero_grad()
        mix = layer.unit_weights()
        parts = [weight_bias(u) for u in (0, 1)]
        weight = sum(mix[u].view(-1, 1, 1, 1) * parts[u][0] for u in (0, 1))
        bias = sum(mix[u] * parts[u][1] for u in (0, 1))
        y = F.conv2d(act(x), weight, bias, padding=1)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        out = {n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None}
        return {"y": y.detach(), **out}

    fast = grads(layer.unit_weight_bias)
    generic = grads(lambda u: QuantConv2d.unit_weight_bias(layer, u))  # quantizes C x C
    assert fast.keys() == generic.keys() and {"dw_weight", "alpha", "weight"} <= fast.keys()
    assert any("log2_range" in k for k in fast)
    for key in fast:
        assert torch.allclose(fast[key], generic[key], atol=1e-6, rtol=1e-5), key
    assert not torch.equal(fast["dw_weight"], torch.zeros_like(fast["dw_weight"]))
