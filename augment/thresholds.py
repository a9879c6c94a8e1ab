"""Threshold search: which confidence makes each exit answer.

Everything here works on cached per-sample outputs (never on a model): for one architecture,
the confidence of each exit, whether each classifier is right, and what each stage costs (MACs,
seconds or joules: the search's efficiency measure).

Two searches over the same grid (README "Search early exits", step 5):
- `exact_grid` simulates the cascade sample by sample for every configuration at once
  (numpy broadcasting over a (G,)*K grid, chunked over samples). It is the ground truth and the
  default while G**K stays small.
- `graph_search` is the paper's: nodes (exit, threshold) plus an input and a final node, edges
  weighted by the change in cost when a threshold is combined with the one before it, and the
  cheapest path found with networkx's Bellman-Ford (weights can be negative). The edge from
  exit k to exit k+1 counts the samples exit k passes on ("conditional", from the cached
  samples) or its pass-on rate times exit k+1's rate on all samples ("independent", the
  paper's assumption). Reaching exit k+1 is approximated by passing exit k alone, which is
  exact for up to two exits (every processor count up to three) and a first-order
  approximation beyond; `exact_grid` checks it.

Rule shared with the firmware: an exit answers when its confidence is >= its threshold; a
threshold >= 1 never answers (int8 scores cannot exceed 127/128 of full scale).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import networkx as nx
import numpy as np

from eenn.errors import EennError

CONFIDENCES = ("max", "margin")
EXACT_LIMIT = 50_000_000  # `auto` simulates every configuration while G**K · N stays below this


def default_grid(confidence: str = "max", steps: int = 13) -> np.ndarray:
    """13 thresholds: 0.40 … 1.00 for max softmax, 0.00 … 0.96 for the top-1/top-2 margin."""
    if steps < 2:
        raise EennError(f"threshold steps = {steps}: expected at least 2")
    if confidence == "max":
        return np.round(np.linspace(0.4, 1.0, steps), 6)
    if confidence == "margin":
        return np.round(np.linspace(0.0, 0.96, steps), 6)
    raise EennError(f"confidence '{confidence}': expected one of {', '.join(CONFIDENCES)}")


def confidence_of(probs: np.ndarray, kind: str = "max") -> np.ndarray:
    """Per-sample confidence of a softmax array (N, C): max probability or top-1 − top-2 margin."""
    if kind == "max":
        return probs.max(axis=1)
    if kind == "margin":
        top2 = np.partition(probs, probs.shape[1] - 2, axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]
    raise EennError(f"confidence '{kind}': expected one of {', '.join(CONFIDENCES)}")


def exits_at(conf: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean mask of samples an exit answers at `threshold` (>= 1: never)."""
    if threshold >= 1.0:
        return np.zeros(conf.shape, dtype=bool)
    return conf >= threshold


def _exit_matrix(conf: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(G, N): sample i leaves at grid threshold g."""
    m = conf[None, :] >= grid[:, None]
    m[grid >= 1.0] = False
    return m


@dataclass(frozen=True)
class CascadeData:
    """One architecture on one split: what the threshold search needs, per sample."""

    conf: np.ndarray  # (K, N) confidence of each exit
    correct: np.ndarray  # (K + 1, N) bool: exit k right; the last row: the final classifier
    stage_cost: np.ndarray  # (K + 1,) cost added by reaching stage k (segment k + exit k; last: rest + head)

    @property
    def n_exits(self) -> int:
        return int(self.conf.shape[0])

    @property
    def n(self) -> int:
        return int(self.correct.shape[1])


@dataclass(frozen=True)
class Objective:
    """What the search minimises; both accuracy and efficiency as fractions of the base model.

    weighted: cost = −(w · efficiency_gain − (1 − w) · accuracy_drop)
    max_drop: maximise efficiency_gain subject to accuracy_drop <= max_drop (cost = −gain,
              infeasible configurations cost +inf)
    """

    kind: str
    base_cost: float
    base_accuracy: float
    w: float = 0.9
    max_drop: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("weighted", "max_drop"):
            raise EennError(f"objective '{self.kind}': expected weighted or max_drop")
        if self.kind == "weighted" and not 0.0 <= self.w <= 1.0:
            raise EennError(f"w = {self.w}: expected a weight between 0 and 1")
        if self.kind == "max_drop" and (self.max_drop is None or self.max_drop < 0):
            raise EennError("the max_drop objective needs a maximum accuracy drop >= 0")

    def gain(self, mean_cost):
        return 1.0 - np.asarray(mean_cost) / self.base_cost

    def drop(self, accuracy):
        return self.base_accuracy - np.asarray(accuracy)

    def cost(self, mean_cost, accuracy):
        gain, drop = self.gain(mean_cost), self.drop(accuracy)
        if self.kind == "weighted":
            return -(self.w * gain - (1.0 - self.w) * drop)
        return np.where(drop <= self.max_drop + 1e-12, -gain, np.inf)


@dataclass(frozen=True)
class GridResult:
    """Every configuration of a (G,)*K grid, exactly simulated."""

    grid: np.ndarray
    mean_cost: np.ndarray  # (G,)*K
    accuracy: np.ndarray  # (G,)*K
    termination: np.ndarray  # (G,)*K + (K + 1,) share of samples answered by each stage
    n: int = 0  # samples simulated: lets `recost` repeat exact_grid's integer arithmetic

    def recost(self, stage_cost: Sequence[float]) -> GridResult:
        """The same cascade with other stage costs (another placement of the same cuts): who exits
        where and who is right do not depend on the processors, so only the mean cost changes."""
        cost = np.asarray(stage_cost, dtype=np.float64)
        k = np.ndim(self.mean_cost)
        if k == 0:
            return replace(self, mean_cost=np.array(float(cost[0])))
        term = np.rint(np.asarray(self.termination) * self.n)
        zeros = np.zeros(term.shape[:-1] + (1,))
        reach = self.n - np.concatenate([zeros, np.cumsum(term[..., :-1], axis=-1)], axis=-1)
        return replace(self, mean_cost=(reach * cost).sum(-1) / self.n)


def exact_grid(data: CascadeData, grid: Sequence[float], max_cells: int = 1 << 24) -> GridResult:
    """Simulate the cascade for all G**K threshold configurations, vectorised over samples."""
    grid = np.asarray(grid, dtype=np.float64)
    k_exits, n, g = data.n_exits, data.n, len(grid)
    shape = (g,) * k_exits
    if k_exits == 0:
        acc = data.correct[0].mean()
        return GridResult(grid, np.array(float(data.stage_cost[0])), np.array(acc), np.ones((1,)), n)
    term = np.zeros(shape + (k_exits + 1,), dtype=np.int64)
    right = np.zeros(shape, dtype=np.int64)
    exit_m = [_exit_matrix(data.conf[k], grid) for k in range(k_exits)]
    chunk = max(1, max_cells // (g ** k_exits))
    for lo in range(0, n, chunk):
        sl = slice(lo, min(n, lo + chunk))
        alive = np.ones((sl.stop - sl.start,), dtype=bool)
        for k in range(k_exits):
            ex = exit_m[k][:, sl].reshape((1,) * k + (g, -1))
            here = alive[..., None, :] & ex
            alive = alive[..., None, :] & ~ex
            pad = (1,) * (k_exits - k - 1)
            term[..., k] += here.sum(-1).reshape(here.shape[:-1] + pad)
            right += (here & data.correct[k][sl]).sum(-1).reshape(here.shape[:-1] + pad)
        term[..., k_exits] += alive.sum(-1)
        right += (alive & data.correct[k_exits][sl]).sum(-1)
    reach = n - np.concatenate([np.zeros(shape + (1,), dtype=np.int64), np.cumsum(term[..., :-1], axis=-1)], axis=-1)
    mean_cost = (reach * np.asarray(data.stage_cost, dtype=np.float64)).sum(-1) / n
    return GridResult(grid, mean_cost, right / n, term / n, n)


def simulate(data: CascadeData, thresholds: Sequence[float]) -> tuple[np.ndarray, float, float]:
    """One configuration: (stage index answering each sample, accuracy, mean cost)."""
    stage = np.full(data.n, data.n_exits, dtype=np.int64)
    alive = np.ones(data.n, dtype=bool)
    for k, t in enumerate(thresholds):
        here = alive & exits_at(data.conf[k], t)
        stage[here] = k
        alive &= ~here
    right = data.correct[stage, np.arange(data.n)]
    cum = np.cumsum(data.stage_cost)
    return stage, float(right.mean()), float(cum[stage].mean())


@dataclass(frozen=True)
class Choice:
    thresholds: tuple[float, ...]
    indices: tuple[int, ...]
    cost: float
    mean_cost: float
    accuracy: float
    method: str  # "exact" or "graph"
    termination: tuple[float, ...] = ()  # share of samples each stage answers (K + 1)


def best_exact(result: GridResult, objective: Objective) -> Choice:
    cost = objective.cost(result.mean_cost, result.accuracy)
    flat = np.asarray(cost).reshape(-1)
    i = int(np.argmin(flat))  # ties: the first, i.e. the lowest thresholds in grid order
    idx = np.unravel_index(i, np.shape(cost)) if np.ndim(cost) else ()
    k = np.ndim(result.mean_cost)
    rates = np.asarray(result.termination, dtype=np.float64).reshape(-1, k + 1)[i]
    return Choice(tuple(float(result.grid[j]) for j in idx), tuple(int(j) for j in idx), float(flat[i]),
                  float(np.asarray(result.mean_cost).reshape(-1)[i]), float(np.asarray(result.accuracy).reshape(-1)[i]),
                  "exact", tuple(float(r) for r in rates))


def _graph_edges(data: CascadeData, grid: np.ndarray, w: float, base_cost: float, mode: str):
    """Edge weight matrices of the threshold graph for the weighted objective (constant terms dropped).

    Per sample, reaching stage k costs a_k = w · cost_k / base / N and a right answer earns
    b = (1 − w) / N. The final classifier's share is folded into the edge that enters the last
    exit, so that the path cost is exact whenever that edge sees every threshold (K <= 2).
    """
    k_exits, n = data.n_exits, data.n
    a = w * np.asarray(data.stage_cost, dtype=np.float64) / base_cost / n
    b = (1.0 - w) / n
    ex = [_exit_matrix(data.conf[k], grid).astype(np.float64) for k in range(k_exits)]
    rej = [1.0 - e for e in ex]
    corr = [c.astype(np.float64) for c in data.correct]

    def stage_terms(k: int) -> np.ndarray:
        """(G, N): what a sample that reaches exit k adds, for each threshold of exit k."""
        t = a[k] - b * ex[k] * corr[k][None, :]
        if k == k_exits - 1:
            t = t + rej[k] * (a[k_exits] - b * corr[k_exits])[None, :]
        return t

    first = stage_terms(0).sum(axis=1)  # every sample reaches stage 0
    pairs = []
    for k in range(k_exits - 1):
        terms = stage_terms(k + 1)
        if mode == "conditional":
            pairs.append(rej[k] @ terms.T)  # (G, G'): samples exit k passes on, then exit k+1
        elif mode == "independent":
            pairs.append(np.outer(rej[k].mean(axis=1), terms.sum(axis=1)))
        else:
            raise EennError(f"graph mode '{mode}': expected conditional or independent")
    return first, pairs


def graph_path(data: CascadeData, grid: Sequence[float], w: float, base_cost: float,
               mode: str = "conditional") -> tuple[int, ...]:
    """Grid indices of the cheapest input → final path (networkx Bellman-Ford)."""
    grid = np.asarray(grid, dtype=np.float64)
    if data.n_exits == 0:
        return ()
    first, pairs = _graph_edges(data, grid, w, base_cost, mode)
    g = nx.DiGraph()
    k_exits, size = data.n_exits, len(grid)
    for j in range(size):
        g.add_edge("input", (0, j), weight=float(first[j]))
        g.add_edge((k_exits - 1, j), "final", weight=0.0)
    for k, mat in enumerate(pairs):
        for i in range(size):
            for j in range(size):
                g.add_edge((k, i), (k + 1, j), weight=float(mat[i, j]))
    path = nx.bellman_ford_path(g, "input", "final", weight="weight")
    return tuple(int(node[1]) for node in path[1:-1])


def graph_search(data: CascadeData, grid: Sequence[float], objective: Objective,
                 mode: str = "conditional") -> Choice:
    """The paper's graph search; for max_drop, a sweep of the weight (Lagrangian relaxation)
    keeps the best path whose exactly simulated drop satisfies the bound."""
    grid = np.asarray(grid, dtype=np.float64)
    if objective.kind == "weighted":
        candidates = [graph_path(data, grid, objective.w, objective.base_cost, mode)]
    else:
        ws = np.concatenate([np.linspace(0.0, 0.9, 10), 1.0 - np.geomspace(0.1, 1e-4, 13), [1.0]])
        candidates = sorted({graph_path(data, grid, float(w), objective.base_cost, mode) for w in ws})
    best: Choice | None = None
    for idx in candidates:
        th = tuple(float(grid[j]) for j in idx)
        stage, acc, mean = simulate(data, th)
        cost = float(objective.cost(mean, acc))
        if best is None or cost < best.cost:
            rates = np.bincount(stage, minlength=data.n_exits + 1) / data.n
            best = Choice(th, idx, cost, mean, acc, "graph", tuple(float(r) for r in rates))
    assert best is not None
    return best


def search(data: CascadeData, grid: Sequence[float], objective: Objective, method: str = "auto",
           exact_limit: int = EXACT_LIMIT) -> tuple[Choice, GridResult | None]:
    """Best thresholds for one architecture; `auto` is exact while G**K · N <= exact_limit."""
    grid = np.asarray(grid, dtype=np.float64)
    if method == "auto":
        method = "exact" if len(grid) ** data.n_exits * data.n <= exact_limit else "graph"
    if method == "exact":
        result = exact_grid(data, grid)
        return best_exact(result, objective), result
    if method == "graph":
        return graph_search(data, grid, objective), None
    raise EennError(f"threshold method '{method}': expected auto, exact or graph")


def search_placements(data: CascadeData, stage_costs: Sequence[Sequence[float]], grid: Sequence[float],
                      objective: Objective, method: str = "auto",
                      exact_limit: int = EXACT_LIMIT) -> list[tuple[Choice, GridResult | None]]:
    """`search` for one set of cuts under several placements (one stage-cost vector each): the
    exact grid is simulated once and re-costed per placement; the graph runs per placement."""
    grid = np.asarray(grid, dtype=np.float64)
    if method == "auto":
        method = "exact" if len(grid) ** data.n_exits * data.n <= exact_limit else "graph"
    if method == "graph":
        return [(graph_search(replace(data, stage_cost=np.asarray(c, dtype=np.float64)), grid, objective), None)
                for c in stage_costs]
    if method != "exact":
        raise EennError(f"threshold method '{method}': expected auto, exact or graph")
    first = exact_grid(data, grid)
    out = []
    for c in stage_costs:
        result = first.recost(c)
        out.append((best_exact(result, objective), result))
    return out
