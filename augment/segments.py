"""Cutting the base model into standalone Keras models: bundle segments and frozen prefixes.

Why rebuild instead of slicing tensors: a segment must be a model of its own with a fixed
input shape (the feature map at the previous cut), so that code generation can convert it to
TFLite on its own. Each cut is a candidate location, where one tensor carries all state, so
re-applying the layers between two cuts to a fresh `Input` reproduces the base model exactly.
Layers come from a clone of the base model, so the caller's model is never modified.
"""
from __future__ import annotations

from typing import Any

import networkx as nx

from eenn.augment.layer_graph import LayerGraph


def _clone(model: Any) -> Any:
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _producers(layer: Any) -> list[str]:
    node = layer._inbound_nodes[0]
    return [t._keras_history.operation.name for t in node.input_tensors]


def submodel(model: Any, lg: LayerGraph, start: str | None, end: str, name: str, add_softmax: bool = False,
             clone: bool = True) -> Any:
    """The part of `model` after layer `start` (None: from the input) up to and including `end`."""
    import keras

    inp, tensors = rebuild(_clone(model) if clone else model, lg, start, end, name)
    out = tensors[end] if end in tensors else inp
    if add_softmax:
        out = keras.layers.Softmax(name=f"{name}_softmax")(out)
    return keras.Model(inp, out, name=name)


def rebuild(source: Any, lg: LayerGraph, start: str | None, end: str, name: str) -> tuple[Any, dict[str, Any]]:
    """Re-apply `source`'s layers between `start` and `end` to a fresh Input; every tensor by layer name."""
    import keras

    g = lg.graph
    wanted = nx.ancestors(g, end) | {end}
    if start is None:
        wanted -= {lg.input_name}
        in_shape = lg.input_shape
        in_name = lg.input_name
        head_layer = lg.input_name
    else:
        wanted &= nx.descendants(g, start)
        in_shape = lg.info(start).output_shape
        in_name = f"{name}_in"
        head_layer = start
    order = [n for n in lg.topological() if n in wanted]
    producers = {n: _producers(source.get_layer(n)) for n in order}
    inp = keras.Input(in_shape, name=in_name)
    tensors: dict[str, Any] = {head_layer: inp}
    for n in order:
        args = [tensors[p] for p in producers[n]]
        tensors[n] = source.get_layer(n)(args[0] if len(args) == 1 else args)
    return inp, tensors


def frozen_prefix(model: Any, lg: LayerGraph, end: str) -> Any:
    """Input → feature map at `end`, not trainable (BatchNorm in inference mode)."""
    prefix = submodel(model, lg, None, end, name=f"prefix_{end}")
    prefix.trainable = False
    return prefix
