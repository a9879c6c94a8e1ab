"""The fine-grained representation: one networkx node per Keras layer.

Built by walking back from the model's output through each tensor's producing layer, so the
same code reads Functional and Sequential models. Nodes carry what the cost model needs: output
shape, MACs, parameters (count and int8 bytes) and activation bytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any

import networkx as nx

from eenn.augment import macs as M
from eenn.errors import EennError


@dataclass(frozen=True)
class LayerInfo:
    name: str
    class_name: str
    kind: str  # compute, post, pool, global_pool, reshape, shaping, merge, input
    output_shape: tuple[int, ...]  # without the batch dimension
    macs: int
    params: int
    param_bytes: int  # after int8 quantization (int32 biases, folded BN = 0)
    activation_bytes: int  # of the output, int8

    @property
    def is_spatial_compute(self) -> bool:
        return self.class_name in M.SPATIAL_COMPUTE


@dataclass
class LayerGraph:
    graph: nx.DiGraph  # node = layer name, attribute "info" = LayerInfo
    input_name: str
    output_name: str
    model: Any  # the keras.Model it was built from

    def info(self, name: str) -> LayerInfo:
        return self.graph.nodes[name]["info"]

    def topological(self) -> list[str]:
        return list(nx.lexicographical_topological_sort(self.graph, key=self._order.__getitem__))

    @property
    def _order(self) -> dict[str, int]:
        return self.graph.graph["order"]

    @property
    def total_macs(self) -> int:
        return sum(self.info(n).macs for n in self.graph)

    @property
    def total_params(self) -> int:
        return sum(self.info(n).params for n in self.graph)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.info(self.input_name).output_shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.info(self.output_name).output_shape


def _shape(tensor: Any) -> tuple[int, ...]:
    dims = tuple(tensor.shape)[1:]
    if any(d is None for d in dims):
        raise EennError(f"tensor {getattr(tensor, 'name', '?')} has an undefined dimension {tuple(tensor.shape)}: "
                        "eenn needs fixed input shapes (give the model's Input a full shape)")
    return tuple(int(d) for d in dims)


def _producer(tensor: Any) -> tuple[Any, int]:
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        raise EennError(f"cannot trace tensor {tensor!r} back to a layer")
    return history.operation, history.node_index


def build_layer_graph(model: Any) -> LayerGraph:
    """The layer graph of a single-input, single-output Keras 3 model."""
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError) as exc:
        raise EennError(f"model '{model.name}' has no defined inputs/outputs (build it with keras.Input): {exc}") from exc
    if len(inputs) != 1 or len(outputs) != 1:
        raise EennError(f"model '{model.name}' has {len(inputs)} inputs and {len(outputs)} outputs: "
                        "eenn supports single-input, single-output classifiers")

    graph = nx.DiGraph()
    seen_nodes: dict[str, int] = {}
    order: dict[str, int] = {}
    unsupported: list[str] = []
    stack = [outputs[0]]
    edges: list[tuple[str, str]] = []
    while stack:
        tensor = stack.pop()
        layer, node_index = _producer(tensor)
        name = layer.name
        if name in seen_nodes:
            if seen_nodes[name] != node_index:
                raise EennError(f"layer '{name}' ({type(layer).__name__}) is shared (called more than once): "
                                "eenn needs each layer used once")
            continue
        seen_nodes[name] = node_index
        class_name = type(layer).__name__
        if hasattr(layer, "layers") and class_name not in M.SUPPORTED:
            unsupported.append(f"'{name}' ({class_name}, a nested model: flatten it into the outer model)")
            continue
        kind = M.kind_of(class_name)
        if kind == "unsupported":
            unsupported.append(f"'{name}' ({class_name})")
        node = layer._inbound_nodes[node_index]
        in_tensors = list(node.input_tensors)
        out_tensors = list(node.output_tensors)
        if len(out_tensors) != 1:
            raise EennError(f"layer '{name}' ({class_name}) has {len(out_tensors)} outputs: not supported")
        graph.add_node(name, layer=layer, in_shapes=[_shape(t) for t in in_tensors], out_shape=_shape(out_tensors[0]))
        for t in in_tensors:
            src, _ = _producer(t)
            edges.append((src.name, name))
            stack.append(t)
    if unsupported:
        raise EennError("unsupported layer(s): " + ", ".join(sorted(set(unsupported)))
                        + f". Supported types: {', '.join(sorted(M.SUPPORTED))}")
    graph.add_edges_from(edges)

    # Stable order: the model's own layer order (Keras lists layers topologically).
    layer_order = {layer.name: i for i, layer in enumerate(getattr(model, "layers", []))}
    input_name = _producer(inputs[0])[0].name
    for name in graph:
        order[name] = -1 if name == input_name else layer_order.get(name, len(layer_order))
    graph.graph["order"] = order

    for name in graph:
        data = graph.nodes[name]
        layer = data["layer"]
        class_name = type(layer).__name__
        config = layer.get_config()
        preds = list(graph.predecessors(name))
        folded = (class_name == "BatchNormalization" and len(preds) == 1
                  and type(graph.nodes[preds[0]]["layer"]).__name__ in M.COMPUTE)
        weight_shapes = [tuple(int(d) for d in w.shape) for w in layer.weights]
        data["info"] = LayerInfo(
            name=name,
            class_name=class_name,
            kind=M.kind_of(class_name),
            output_shape=data["out_shape"],
            macs=int(M.layer_macs(class_name, config, data["in_shapes"], data["out_shape"])),
            params=int(layer.count_params()) if layer.weights else 0,
            param_bytes=int(M.param_bytes_int8(class_name, config, weight_shapes, folded)),
            activation_bytes=int(prod(data["out_shape"])),
        )
    output_name = _producer(outputs[0])[0].name
    return LayerGraph(graph=graph, input_name=input_name, output_name=output_name, model=model)
