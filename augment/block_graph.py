"""The coarse-grained representation: blocks, candidate exit locations and the classifier blueprint.

A layer lies "on the spine" when every path from the input to the output passes through it
(it dominates the output). Between two consecutive spine layers there is either nothing (a
plain chain) or a fork … join: a residual block, which becomes one node. Post-processing
(BN, activation, pooling, dropout) is fused into the compute layer before it, and a depthwise
convolution followed by its 1×1 pointwise convolution is one depthwise-separable block. The
classifier head (everything after the last spatial block) is the blueprint for new exits; the
outputs of the blocks before it, where one tensor carries all state forward, are the candidate
exit locations.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from eenn.augment.layer_graph import LayerGraph, LayerInfo
from eenn.errors import EennError


@dataclass(frozen=True)
class Block:
    index: int
    name: str
    kind: str  # conv, dwsep, residual, dense, head
    layers: tuple[str, ...]
    output_layer: str  # the Keras layer whose output is the block's output
    output_shape: tuple[int, ...]
    macs: int
    params: int
    param_bytes: int
    activation_bytes: int  # of the output tensor, int8
    peak_bytes: int  # largest live activation set while the block runs (int8)

    @property
    def n_layers(self) -> int:
        return len(self.layers)


@dataclass(frozen=True)
class Candidate:
    """A place for an early exit: the output of backbone block `block`."""

    after_layer: str
    block: int
    macs_before: int  # backbone MACs up to and including this location
    shape: tuple[int, ...]
    activation_bytes: int


@dataclass(frozen=True)
class Blueprint:
    """The base model's classifier head, to be copied for every early exit."""

    layers: tuple[dict[str, Any], ...]  # {"name", "class_name", "config"} in order
    macs: int
    params: int
    input_shape: tuple[int, ...]

    @property
    def class_names(self) -> list[str]:
        return [layer["class_name"] for layer in self.layers]


@dataclass
class BlockGraph:
    layer_graph: LayerGraph
    blocks: list[Block]  # the backbone, in order
    head: Block
    candidates: list[Candidate]
    blueprint: Blueprint
    graph: nx.DiGraph = field(repr=False)  # block chain: input → blocks → head

    @property
    def total_macs(self) -> int:
        return sum(b.macs for b in self.blocks) + self.head.macs

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.layer_graph.input_shape

    @property
    def num_classes(self) -> int:
        return int(self.layer_graph.output_shape[-1])

    def candidate(self, after_layer: str) -> Candidate:
        for c in self.candidates:
            if c.after_layer == after_layer:
                return c
        raise EennError(f"'{after_layer}' is not a candidate exit location; candidates: "
                        + ", ".join(c.after_layer for c in self.candidates))


@dataclass
class _Unit:
    """A spine layer, or a residual region ending in a spine layer (its join)."""

    layers: list[str]
    residual: bool

    def last(self) -> str:
        return self.layers[-1]


def _spine(lg: LayerGraph) -> list[str]:
    g = lg.graph
    relevant = nx.ancestors(g, lg.output_name) | {lg.output_name}
    sub = g.subgraph(relevant)
    idom = nx.immediate_dominators(sub, lg.input_name)
    chain = [lg.output_name]
    while chain[-1] != lg.input_name:
        chain.append(idom[chain[-1]])
    return chain[::-1]


def _units(lg: LayerGraph, spine: list[str]) -> list[_Unit]:
    g = lg.graph
    order = lg.graph.graph["order"]
    units = []
    for a, b in zip(spine, spine[1:]):
        inside = (nx.descendants(g, a) & nx.ancestors(g, b)) - {a}
        layers = sorted(inside, key=order.__getitem__) + [b]
        units.append(_Unit(layers=layers, residual=len(layers) > 1))
    return units


def _is_compute(lg: LayerGraph, unit: _Unit) -> bool:
    return unit.residual or lg.info(unit.last()).kind == "compute"


def _is_spatial(lg: LayerGraph, unit: _Unit) -> bool:
    return any(lg.info(n).is_spatial_compute for n in unit.layers)


def _is_pointwise(info: LayerInfo, lg: LayerGraph) -> bool:
    layer = lg.graph.nodes[info.name]["layer"]
    if info.class_name not in ("Conv1D", "Conv2D"):
        return False
    cfg = layer.get_config()
    return all(int(k) == 1 for k in cfg["kernel_size"]) and all(int(s) == 1 for s in cfg["strides"])


def _peak_bytes(lg: LayerGraph, layers: list[str], residual: bool, block_input_bytes: int) -> int:
    """Largest (inputs + output) of any layer, plus the held shortcut inside a residual block."""
    g = lg.graph
    peak = 0
    for n in layers:
        ins = sum(lg.info(p).activation_bytes for p in g.predecessors(n))
        live = ins + lg.info(n).activation_bytes + (block_input_bytes if residual else 0)
        peak = max(peak, live)
    return peak


def _make_block(lg: LayerGraph, index: int, kind: str, layers: list[str], residual: bool,
                input_bytes: int, join: str | None = None) -> Block:
    infos = [lg.info(n) for n in layers]
    out = infos[-1]
    main = next((i.name for i in infos if i.kind == "compute"), layers[0])
    name = f"res_{join}" if residual and join else main
    return Block(index=index, name=name, kind=kind, layers=tuple(layers), output_layer=out.name,
                 output_shape=out.output_shape, macs=sum(i.macs for i in infos), params=sum(i.params for i in infos),
                 param_bytes=sum(i.param_bytes for i in infos), activation_bytes=out.activation_bytes,
                 peak_bytes=_peak_bytes(lg, layers, residual, input_bytes))


def build_block_graph(lg: LayerGraph) -> BlockGraph:
    """Fuse and collapse the layer graph into blocks; find candidates and the blueprint."""
    units = _units(lg, _spine(lg))
    if not units:
        raise EennError("the model has no layers between its input and output")

    spatial = [i for i, u in enumerate(units) if _is_spatial(lg, u)]
    if spatial:
        last = spatial[-1]
        # The last spatial block keeps its BN/activation/dropout; pooling starts the head.
        while last + 1 < len(units) and not units[last + 1].residual and lg.info(units[last + 1].last()).kind == "post":
            last += 1
        head_units = units[last + 1:]
        if not any(_is_compute(lg, u) for u in head_units):
            # A fully convolutional classifier: its last convolution is the classifier.
            last = max(i for i in range(last + 1) if _is_compute(lg, units[i])) - 1
            head_units = units[last + 1:]
        backbone_units = units[:last + 1]
    else:
        compute = [i for i, u in enumerate(units) if _is_compute(lg, u)]
        if not compute:
            raise EennError("the model has no convolution or dense layer: nothing to place exits around")
        backbone_units = units[:compute[-1]]
        head_units = units[compute[-1]:]

    # Group backbone units into blocks: a compute unit opens a block, the rest join it.
    groups: list[tuple[str, list[_Unit]]] = []
    for u in backbone_units:
        info = lg.info(u.last())
        if u.residual:
            groups.append(("residual", [u]))
        elif info.kind == "compute":
            prev_dw = (groups and groups[-1][0] == "dw")
            if prev_dw and _is_pointwise(info, lg):
                groups[-1] = ("dwsep", groups[-1][1] + [u])
            else:
                kind = "dw" if info.class_name.startswith("Depthwise") else ("dense" if info.class_name == "Dense" else "conv")
                groups.append((kind, [u]))
        elif groups:
            groups[-1][1].append(u)
        else:  # leading padding / rescaling before the first compute layer
            groups.append(("stem", [u]))
    # A leading stem joins the first compute block.
    if len(groups) > 1 and groups[0][0] == "stem":
        stem = groups.pop(0)
        groups[0] = (groups[0][0], stem[1] + groups[0][1])

    blocks: list[Block] = []
    input_bytes = lg.info(lg.input_name).activation_bytes
    for kind, us in groups:
        layers = [n for u in us for n in u.layers]
        kind = {"dw": "conv", "stem": "conv"}.get(kind, kind)
        join = next((u.last() for u in us if u.residual), None)
        block = _make_block(lg, len(blocks), kind, layers, join is not None, input_bytes, join)
        blocks.append(block)
        input_bytes = block.activation_bytes
    head_layers = [n for u in head_units for n in u.layers]
    head = _make_block(lg, len(blocks), "head", head_layers, False, input_bytes)

    candidates, cumulative = [], 0
    for b in blocks[:-1]:
        cumulative += b.macs
        candidates.append(Candidate(after_layer=b.output_layer, block=b.index, macs_before=cumulative,
                                    shape=b.output_shape, activation_bytes=b.activation_bytes))

    bp_layers = tuple({"name": n, "class_name": lg.info(n).class_name,
                       "config": lg.graph.nodes[n]["layer"].get_config()} for n in head_layers)
    head_input = blocks[-1].output_shape if blocks else lg.input_shape
    blueprint = Blueprint(layers=bp_layers, macs=head.macs, params=head.params, input_shape=head_input)

    chain = nx.DiGraph()
    names = ["input"] + [b.name for b in blocks] + ["head"]
    for b in blocks + [head]:
        chain.add_node(b.name if b.kind != "head" else "head", block=b)
    chain.add_node("input", block=None)
    chain.add_edges_from(zip(names, names[1:]))
    return BlockGraph(layer_graph=lg, blocks=blocks, head=head, candidates=candidates, blueprint=blueprint,
                      graph=chain)
