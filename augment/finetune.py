"""Optional joint fine-tuning of the chosen EENN (`--finetune`, README "Search early exits"; the paper's last step).

Why only for the chosen one: the exits were trained on a frozen backbone so that they could
be reused across architectures; once one architecture is chosen, one epoch with the backbone
unfrozen and the losses of all classifiers combined lets backbone and exits adapt to each
other. The learning rate is small and BatchNormalization stays in inference mode (its
statistics from the base model's training are better than a few hundred samples' would be).
Afterwards the exits' temperatures are fitted again and the caller searches thresholds on a
finer grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from eenn.augment.architectures import Architecture
from eenn.augment.block_graph import BlockGraph
from eenn.augment.data import Dataset
from eenn.augment.exits import build_exit
from eenn.augment.layer_graph import LayerGraph
from eenn.augment.progress import Progress
from eenn.augment.segments import rebuild, submodel
from eenn.augment.exit_store import TrainedExit
from eenn.augment.export_fold import fit_temperature, scalable, scale_last_layer

EXIT_LOSS_WEIGHT = 1.0  # each exit's cross-entropy, relative to the final classifier's (1.0)
LEARNING_RATE = 1e-4


@dataclass
class FinetuneResult:
    models: dict[str, Any]  # bundle file name → Keras model (segments and exits)
    probs: dict[str, dict[str, Any]]  # split → {"exits": {location: softmax}, "final": softmax}
    loss_before: float
    loss_after: float


def finetune(model: Any, lg: LayerGraph, bg: BlockGraph, arch: Architecture, exits: dict[int, TrainedExit],
             dataset: Dataset, logits: bool, config: Any, progress: Progress | None = None) -> FinetuneResult:
    import keras

    progress = progress or Progress(enabled=False)
    keras.utils.set_random_seed(config.seed)
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for layer in clone.layers:
        if type(layer).__name__ == "BatchNormalization":
            layer.trainable = False
    locs = [bg.candidates[c].after_layer for c in arch.cuts]
    exit_models = {}
    for i, (c, loc) in enumerate(zip(arch.cuts, locs)):
        trained = exits[c].load_model()
        m = build_exit(exits[c].plan, name=f"exit{i}")  # unique layer names inside the joint model
        for a, b in zip([l for l in trained.layers if l.weights], [l for l in m.layers if l.weights]):
            b.set_weights(a.get_weights())
        exit_models[loc] = m
    # One graph: the clone's layers from its input, each exit called on its location's tensor.
    x, tensors = rebuild(clone, lg, None, lg.output_name, name="ft")
    heads = [exit_models[l](tensors[l]) for l in locs]
    out = tensors[lg.output_name]
    final = keras.layers.Softmax(name="ft_final_softmax")(out) if logits else out
    joint = keras.Model(x, heads + [final])
    n_out = len(heads) + 1
    joint.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                  loss=["sparse_categorical_crossentropy"] * n_out,
                  loss_weights=[EXIT_LOSS_WEIGHT] * len(heads) + [1.0])
    y = dataset.y_train
    before = joint.evaluate(dataset.x_train, [y] * n_out, verbose=0, batch_size=64)
    progress.say(f"fine-tuning the chosen EENN jointly for one epoch on {len(y)} samples")
    joint.fit(dataset.x_train, [y] * n_out, epochs=1, batch_size=32, shuffle=True, verbose=0)
    after = joint.evaluate(dataset.x_train, [y] * n_out, verbose=0, batch_size=64)

    def predict(xs):
        out = joint.predict(xs, batch_size=128, verbose=0)
        return [np.asarray(o, dtype=np.float32) for o in (out if isinstance(out, (list, tuple)) else [out])]

    # Refit each exit's temperature on the calibration split (log-probabilities shift-invariantly
    # stand in for logits), folded into its last layer.
    cal = predict(dataset.x_cal)
    for k, loc in enumerate(locs):
        plan = exits[arch.cuts[k]].plan
        if scalable(plan):
            t = fit_temperature(np.log(np.clip(cal[k], 1e-30, 1.0)), dataset.y_cal)
            scale_last_layer(exit_models[loc], 1.0 / t)
    probs = {}
    for split, xs in (("cal", dataset.x_cal), ("test", dataset.x_test)):
        p = predict(xs)
        probs[split] = {"exits": dict(zip(locs, p[:-1])), "final": p[-1]}
    models: dict[str, Any] = {}
    starts = [None] + locs
    ends = locs + [lg.output_name]
    for i, (start, end) in enumerate(zip(starts, ends)):
        last = i == len(ends) - 1
        models[f"segment_{i}.keras"] = submodel(clone, lg, start, end, name=f"segment_{i}", add_softmax=last and logits)
    for i, loc in enumerate(locs):
        models[f"exit_{i}.keras"] = exit_models[loc]
    total = lambda r: float(r[0] if isinstance(r, (list, tuple)) else r)  # noqa: E731
    return FinetuneResult(models=models, probs=probs, loss_before=total(before), loss_after=total(after))
