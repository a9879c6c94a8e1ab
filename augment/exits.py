"""Early-exit construction: a rule-based head at a candidate location, built from the blueprint.

Why a rule and not a search: the exits are trained once and reused by every architecture, so
their shape must follow from the location alone (README "Search early exits"). The rule, per location with a
feature map of spatial size S and C channels:

1. a 1×1 convolution with ReLU to `width` channels (the bottleneck: it cuts wide maps and
   gives the blueprint's pooling a learned non-linearity to pool; `width=0` leaves it out),
   then, while the map still has spatial extent, one depthwise-separable block (3-wide
   depthwise + 1×1, ReLU) that mixes neighbouring positions before the global pooling
   (`mixing`; early feature maps see too little context for a pooled linear classifier);
2. while the exit's MACs exceed `budget` (a share of the backbone's MACs), alternately average
   pooling by 2 along every spatial axis longer than 1 and halving `width` (not below 16 or
   the number of classes while pooling is still possible): resolution and width shrink
   together instead of one of them collapsing;
3. a fresh copy of the classifier blueprint: pooling with a fixed size is resized to give the
   blueprint's own output size on this map (DS-CNN's 13×5 average pool becomes global), dense
   layers keep their units (the last one the number of classes), weights are new;
4. a Softmax at the end (a Dense with a softmax activation is split into Dense + Softmax, and
   logit models get one), so that every exit gives probabilities over the same classes.

The plan is plain data (JSON-able layer specs); `build_exit` turns it into a Keras model whose
MACs, int8 weight bytes and activation peak come from the same layer graph as the backbone's.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from math import ceil
from typing import Any

from eenn.augment.architectures import ExitCost
from eenn.augment.block_graph import Blueprint, Candidate
from eenn.errors import EennError

POOLING = {"AveragePooling1D", "AveragePooling2D", "MaxPooling1D", "MaxPooling2D"}
PASS_THROUGH = {"GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
                "Flatten", "Dropout", "ReLU", "Activation", "Softmax", "BatchNormalization", "LeakyReLU",
                "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout"}
_DROP_KEYS = ("name", "dtype", "trainable", "kernel_initializer", "bias_initializer", "quantization_config")


@dataclass(frozen=True)
class ExitConfig:
    budget_share: float = 0.05  # an exit's MACs stay under this share of the backbone's
    width: int = 64  # channels of the 1×1 bottleneck (0: none, blueprint only)
    mixing: int = 1  # depthwise-separable blocks after the bottleneck while the map has extent

    def to_dict(self) -> dict[str, Any]:
        return {"budget_share": self.budget_share, "width": self.width, "mixing": self.mixing}


@dataclass(frozen=True)
class ExitPlan:
    location: str  # the Keras layer whose output feeds the exit
    input_shape: tuple[int, ...]
    layers: tuple[dict[str, Any], ...]  # {"class_name", "config"} in order, names excluded
    cost: ExitCost
    over_budget: bool  # even the smallest exit the rule allows exceeds the budget

    @property
    def digest(self) -> str:
        """Identifies the exit's structure (part of its training-cache key)."""
        blob = json.dumps({"input": list(self.input_shape), "layers": list(self.layers)}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def describe(self) -> str:
        return " → ".join(_short(l) for l in self.layers)


def _short(layer: dict[str, Any]) -> str:
    c, cfg = layer["class_name"], layer["config"]
    if c in POOLING:
        return f"{c}({'×'.join(map(str, cfg['pool_size']))})"
    if c.startswith("Conv"):
        return f"{c}({cfg['filters']}, {'×'.join(map(str, cfg['kernel_size']))})"
    if c == "Dense":
        return f"Dense({cfg['units']})"
    return c


def _clean(config: dict[str, Any]) -> dict[str, Any]:
    cfg = {k: v for k, v in copy.deepcopy(config).items() if k not in _DROP_KEYS}
    for k, v in list(cfg.items()):
        if isinstance(v, tuple):
            cfg[k] = list(v)
    return cfg


def _pool_layer(rank: int, factors: list[int]) -> dict[str, Any]:
    return {"class_name": f"AveragePooling{rank}D",
            "config": {"pool_size": list(factors), "strides": list(factors), "padding": "same"}}


def _conv1x1(rank: int, width: int) -> dict[str, Any]:
    return {"class_name": f"Conv{rank}D",
            "config": {"filters": width, "kernel_size": [1] * rank, "strides": [1] * rank, "padding": "valid",
                       "activation": "relu", "use_bias": True}}


def _mixing(rank: int, width: int) -> list[dict[str, Any]]:
    dw = {"class_name": f"DepthwiseConv{rank}D",
          "config": {"kernel_size": [3] * rank, "strides": [1] * rank, "padding": "same", "activation": "relu",
                     "use_bias": True}}
    return [dw, _conv1x1(rank, width)]


def _adapt_blueprint(blueprint: Blueprint, spatial: list[int], num_classes: int) -> list[dict[str, Any]]:
    """The blueprint's layers for a map of spatial size `spatial` (after the exit's downsampling)."""
    out: list[dict[str, Any]] = []
    bp_spatial = list(blueprint.input_shape[:-1])
    for layer in blueprint.layers:
        c, cfg = layer["class_name"], _clean(layer["config"])
        if c in POOLING:
            pool = [int(p) for p in (cfg["pool_size"] if isinstance(cfg["pool_size"], (list, tuple)) else [cfg["pool_size"]])]
            strides = cfg.get("strides") or pool
            strides = [int(s) for s in (strides if isinstance(strides, (list, tuple)) else [strides])]
            # The blueprint's output size on its own map, reproduced on this map.
            target = [max(1, (d - p) // s + 1) if cfg.get("padding", "valid") == "valid" else max(1, ceil(d / s))
                      for d, p, s in zip(bp_spatial, pool, strides)]
            size = [max(1, d // t) for d, t in zip(spatial, target)]
            cfg.update(pool_size=size, strides=size, padding="valid")
            spatial = [d // s for d, s in zip(spatial, size)]
            bp_spatial = target
            out.append({"class_name": c, "config": cfg})
        elif c.startswith("Conv") or c.startswith("DepthwiseConv") or c.startswith("SeparableConv"):
            # A fully convolutional classifier: keep the layer, but never a kernel larger than the map.
            if cfg.get("padding", "valid") == "valid":
                cfg["kernel_size"] = [min(int(k), d) for k, d in zip(cfg["kernel_size"], spatial)]
            out.append({"class_name": c, "config": cfg})
            stride = cfg.get("strides", [1] * len(spatial))
            if cfg.get("padding", "valid") == "valid":
                spatial = [(d - k) // s + 1 for d, k, s in zip(spatial, cfg["kernel_size"], stride)]
            else:
                spatial = [ceil(d / s) for d, s in zip(spatial, stride)]
        elif c == "Dense":
            out.append({"class_name": c, "config": cfg})
        elif c in PASS_THROUGH:
            if c.startswith("Global") or c == "Flatten":
                spatial = []
            out.append({"class_name": c, "config": cfg})
        elif c == "Reshape" and len(cfg.get("target_shape", [])) == 1:
            out.append({"class_name": "Flatten", "config": {}})
            spatial = []
        else:
            raise EennError(f"the classifier blueprint has a {c} layer ('{layer['name']}') that eenn cannot "
                            "adapt to an early-exit location; supported: pooling, global pooling, flatten, "
                            "dense, convolutions, normalization, activations, dropout")
    # End in an explicit Softmax over the model's classes.
    last = out[-1]
    if last["class_name"] == "Dense" and last["config"].get("activation") == "softmax":
        last["config"]["activation"] = "linear"
        out.append({"class_name": "Softmax", "config": {}})
    elif last["class_name"] == "Activation" and last["config"].get("activation") == "softmax":
        out[-1] = {"class_name": "Softmax", "config": {}}
    elif last["class_name"] != "Softmax":
        out.append({"class_name": "Softmax", "config": {}})
    dense_units = [l["config"].get("units") for l in out if l["class_name"] == "Dense"]
    conv_filters = [l["config"].get("filters") for l in out if l["class_name"].startswith("Conv")]
    final_units = (dense_units or conv_filters or [None])[-1]
    if final_units != num_classes:
        raise EennError(f"the classifier blueprint ends in {final_units} units, the model has {num_classes} classes")
    return out


def is_pointwise(layer: dict[str, Any]) -> bool:
    """A 1×1 convolution (stride 1, no dilation, one group): a Dense layer on the channel axis."""
    c, cfg = layer["class_name"], layer["config"]
    if c not in ("Conv1D", "Conv2D"):
        return False
    ones = [cfg.get("kernel_size"), cfg.get("strides", 1), cfg.get("dilation_rate", 1)]
    return (all(all(int(k) == 1 for k in (v if isinstance(v, (list, tuple)) else [v])) for v in ones)
            and int(cfg.get("groups", 1)) == 1)


def build_exit(plan: ExitPlan, name: str = "exit", with_logits: bool = False, training_bn: bool = False,
               fake_quant: bool = False, pointwise_dense: bool = False):
    """The Keras model of an exit (fresh weights): feature map → softmax (and, optionally, logits).

    `training_bn` puts a BatchNormalization (named `*_bnfold`) before every Dense layer: it speeds
    up training on pooled features and is folded into that Dense afterwards (training.py).
    `fake_quant` rounds every tensor the int8 model will hold, from the first weighted layer's
    output on, to an int8 grid (augment/fake_quant.py). `pointwise_dense` builds each 1×1
    convolution as the Dense layer it equals (kernel (C, F) instead of (1, 1, C, F)): TensorFlow
    trains it two to three times faster on the CPU. The exported exit never has any of them."""
    import keras

    from eenn.augment.fake_quant import fake_quant_layer, same_grid_layer

    inp = keras.Input(plan.input_shape, name=f"{name}_in")
    x = inp
    logits = None
    grid = None  # the fake-quant layer whose grid the current tensor is on
    for i, layer in enumerate(plan.layers):
        c = layer["class_name"]
        cls = getattr(keras.layers, c)
        if c == "Softmax":
            logits = x
        if training_bn and c == "Dense":
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_{i}_bnfold")(x)
        if pointwise_dense and is_pointwise(layer):
            cfg = layer["config"]
            x = keras.layers.Dense(int(cfg["filters"]), activation=cfg.get("activation"), use_bias=cfg.get("use_bias", True),
                                   name=f"{name}_{i}_{c.lower()}")(x)
        else:
            x = cls.from_config({**copy.deepcopy(layer["config"]), "name": f"{name}_{i}_{c.lower()}"})(x)
        if fake_quant and c != "Softmax":
            if c == "Dense" or "Conv" in c:
                grid = fake_quant_layer(f"{name}_{i}")
                x = grid(x)
            elif grid is not None:  # pooling, flatten: int8 keeps the input's scale
                x = same_grid_layer(f"{name}_{i}", grid)(x)
    model = keras.Model(inp, x, name=name)
    if with_logits:
        return model, keras.Model(inp, logits, name=f"{name}_logits")
    return model


def leading_pooling(plan: ExitPlan) -> int:
    """How many of the exit's first layers are weightless pooling. On the frozen backbone's maps
    they give the same output every epoch, so the feature cache stores that output instead."""
    n = 0
    while n < len(plan.layers) - 1 and plan.layers[n]["class_name"] in POOLING:
        n += 1
    return n


def split_plan(plan: ExitPlan, n: int) -> tuple[ExitPlan, ExitPlan]:
    """The exit's first `n` layers and the rest, each a plan of its own: the rest reads the
    head's output. Both keep the whole exit's cost (what the exit costs on the board)."""
    head = ExitPlan(plan.location, plan.input_shape, plan.layers[:n], plan.cost, plan.over_budget)
    shape = tuple(int(d) for d in build_exit(head, name="head").output.shape[1:]) if n else plan.input_shape
    return head, ExitPlan(plan.location, shape, plan.layers[n:], plan.cost, plan.over_budget)


def _measure(location: str, shape: tuple[int, ...], layers: list[dict[str, Any]]) -> ExitCost:
    from eenn.augment.layer_graph import build_layer_graph

    probe = ExitPlan(location, shape, tuple(layers), ExitCost(0, 0, 0, 0), False)
    lg = build_layer_graph(build_exit(probe, "probe"))
    peak = 0
    for n in lg.graph:
        ins = sum(lg.info(p).activation_bytes for p in lg.graph.predecessors(n))
        peak = max(peak, ins + lg.info(n).activation_bytes)
    compute = sum(1 for n in lg.graph if lg.info(n).kind != "input")
    return ExitCost(macs=lg.total_macs, n_layers=compute,
                    param_bytes=sum(lg.info(n).param_bytes for n in lg.graph), peak_bytes=peak)


def plan_exit(candidate: Candidate, blueprint: Blueprint, num_classes: int, backbone_macs: int,
              config: ExitConfig = ExitConfig()) -> ExitPlan:
    """Apply the rule (module docstring) at one candidate location."""
    shape = tuple(candidate.shape)
    rank = len(shape) - 1
    if rank not in (1, 2):
        raise EennError(f"exit at '{candidate.after_layer}': feature map {shape} is neither 1-D (L, C) nor 2-D (H, W, C)")
    budget = config.budget_share * backbone_macs
    factors = [1] * rank
    width = int(config.width)

    def layers_for() -> list[dict[str, Any]]:
        spatial = [ceil(d / f) for d, f in zip(shape[:-1], factors)]
        pre = []
        if any(f > 1 for f in factors):
            pre.append(_pool_layer(rank, factors))
        if width > 0:
            pre.append(_conv1x1(rank, width))
            if any(d > 1 for d in spatial):
                for _ in range(int(config.mixing)):
                    pre += _mixing(rank, width)
        return pre + _adapt_blueprint(blueprint, spatial, num_classes)

    layers = layers_for()
    cost = _measure(candidate.after_layer, shape, layers)
    min_width = min(width, max(16, num_classes))
    pool_next = True
    while cost.macs > budget:
        spatial = [ceil(d / f) for d, f in zip(shape[:-1], factors)]
        can_pool = any(d > 1 for d in spatial)
        can_narrow = width > min_width
        if not (can_pool or can_narrow or width > num_classes):
            break
        if can_pool and (pool_next or not can_narrow):
            factors = [f * 2 if d > 1 else f for f, d in zip(factors, spatial)]
        elif can_narrow:
            width = max(min_width, width // 2)
        else:  # at one position and the narrowest usual width: narrower still, down to the classes
            width = max(num_classes, width // 2)
        pool_next = not pool_next
        layers = layers_for()
        cost = _measure(candidate.after_layer, shape, layers)
    return ExitPlan(location=candidate.after_layer, input_shape=shape, layers=tuple(layers), cost=cost,
                    over_budget=cost.macs > budget)
