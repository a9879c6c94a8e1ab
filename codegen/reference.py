"""The int8 reference chain: what the firmware must compute, run in Python.

Stage 0's subgraph on the `tflite_micro` runtime → integer exit decision → (requantize) →
stage 1 → ... whichever core each stage runs on (the integer rules do not depend on it: a
feature map between two stages on one core is requantized exactly as one crossing cores).
This is the oracle for the virtual board and the real board: same int8 input, same class,
same exit, sample by sample.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eenn.codegen.manifest import ProjectManifest, Stage, load_manifest
from eenn.augment.quant import exit_taken, quantize, requantize


@dataclass(frozen=True)
class ChainResult:
    cls: int  # predicted class
    exit: int  # stage whose classifier answered (len(stages) - 1 = the final classifier)
    scores: np.ndarray  # int8 scores of the answering classifier
    handoffs: int = 0  # IPC requests on the path taken (core changes from core 0 to the exit's core)


def encode_scores(scores: np.ndarray) -> str:
    """int8 scores as reference.json keeps them per sample: "12,-128,…" (compact: one short string)."""
    return ",".join(str(int(v)) for v in np.asarray(scores).reshape(-1))


def decode_scores(text: str) -> list[int]:
    return [int(v) for v in text.split(",")] if text else []


def _interpreter(model_path: Path):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(model_path.read_bytes())


class Int8Chain:
    """Runs a generated project's stages exactly as the firmware does."""

    def __init__(self, project_dir: str | Path, manifest: ProjectManifest | None = None):
        self.project_dir = Path(project_dir)
        self.manifest = manifest or load_manifest(self.project_dir)
        models = self.project_dir / "eenn"
        self._interpreters = [_interpreter(models / s.model) for s in self.manifest.stages]

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """The int8 bytes the host sends to the board for one float sample."""
        q = self.manifest.input
        return quantize(np.asarray(x).reshape(q.shape), q.scale, q.zero_point)

    def _invoke(self, k: int, data: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        stage: Stage = self.manifest.stages[k]
        interp = self._interpreters[k]
        interp.set_input(data.reshape(stage.input.shape).astype(np.int8), 0)
        interp.invoke()
        scores = np.asarray(interp.get_output(stage.scores.output_index)).reshape(-1).astype(np.int8)
        fm = None
        if stage.feature_map is not None:
            fm = np.asarray(interp.get_output(stage.feature_map.output_index)).reshape(-1).astype(np.int8)
        return scores, fm

    def run_quantized(self, x_q: np.ndarray) -> ChainResult:
        """One sample, already int8 in the input quantization."""
        data = np.asarray(x_q, dtype=np.int8).reshape(-1)
        stages = self.manifest.stages
        for k, stage in enumerate(stages):
            if stage.requant is not None:
                r = stage.requant
                data = requantize(data, r.multiplier, r.shift, r.in_zero_point, r.out_zero_point)
            scores, fm = self._invoke(k, data)
            if stage.is_last or exit_taken(scores, stage.threshold_q, self.manifest.confidence)[0]:
                return ChainResult(cls=int(np.argmax(scores)), exit=k, scores=scores,
                                   handoffs=self.manifest.handoffs(k))
            data = fm
        raise AssertionError("unreachable: the last stage always answers")

    def run(self, x: np.ndarray) -> ChainResult:
        return self.run_quantized(self.quantize_input(x))

    def run_many(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Classes and exits for a batch of float samples."""
        results = [self.run(x) for x in xs]
        return np.array([r.cls for r in results]), np.array([r.exit for r in results])


class WholeEennInt8:
    """The whole EENN converted as one int8 model (input → [exit 0, …, final]), with the same
    integer exit rule: the oracle the per-processor chain is checked against."""

    def __init__(self, tflite: bytes, thresholds: list[float], confidence: str = "max"):
        from tflite_micro.python.tflite_micro import runtime

        from eenn.augment.quant import threshold_q
        from eenn.augment.tflite_model import TfliteModel

        tm = TfliteModel(tflite)
        self.input = tm.inputs[0]
        self.order = tm.output_order()  # Keras output k → output index
        if len(self.order) != len(thresholds) + 1:
            raise ValueError(f"whole model has {len(self.order)} outputs for {len(thresholds)} exits")
        self.confidence = confidence
        self.thresholds_q = []
        for k, t in enumerate(thresholds):
            sc = tm.outputs[self.order[k]]
            self.thresholds_q.append(threshold_q(t, sc.scale, sc.zero_point, confidence))  # type: ignore[arg-type]
        self._interp = runtime.Interpreter.from_bytes(tflite)

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        return quantize(np.asarray(x).reshape(self.input.shape), self.input.scale, self.input.zero_point)

    def run_quantized(self, x_q: np.ndarray) -> tuple[int, int]:
        self._interp.set_input(np.asarray(x_q, dtype=np.int8).reshape(self.input.shape), 0)
        self._interp.invoke()
        n = len(self.order)
        for k in range(n):
            scores = np.asarray(self._interp.get_output(self.order[k])).reshape(-1).astype(np.int8)
            if k == n - 1 or exit_taken(scores, self.thresholds_q[k], self.confidence)[0]:  # type: ignore[arg-type]
                return int(np.argmax(scores)), k
        raise AssertionError("unreachable")


def run_classifier(tflite: bytes, xs: np.ndarray) -> np.ndarray:
    """Classes of a single-output int8 classifier (the base model) on float samples."""
    from tflite_micro.python.tflite_micro import runtime

    from eenn.augment.tflite_model import TfliteModel

    inp = TfliteModel(tflite).inputs[0]
    interp = runtime.Interpreter.from_bytes(tflite)
    out = []
    for x in xs:
        interp.set_input(quantize(np.asarray(x).reshape(inp.shape), inp.scale, inp.zero_point), 0)
        interp.invoke()
        out.append(int(np.argmax(np.asarray(interp.get_output(0)).reshape(-1))))
    return np.array(out, dtype=np.int64)
