"""Every architecture's every threshold configuration at once: the threshold phase at scale.

Why: a 74-location network on a three-processor target has 2,776 architectures (no exit, one
exit, two exits) × 169 threshold pairs on a 13-step grid; simulating each architecture on its
own (`thresholds.exact_grid`) repeats the same per-exit work thousands of times. Here the
per-exit work is done once and shared by all architectures that contain the exit:

- per exit l and threshold g: which samples it answers (E[l, g]), and of those the right ones;
- per ordered pair (a, b): samples exit a passes on and exit b answers, for all G × G
  threshold pairs, as one matrix product over samples for all pairs together
  ((L·G) × N) @ (N × (L·G)), and the same for right answers and for what reaches the final
  classifier. Architectures with more than two exits fall back to `exact_grid`.

Results are exact counts (same numbers as `exact_grid`, within float rounding of the mean
cost); `best_choices` then picks each architecture's best configuration for an objective.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from eenn.augment import thresholds as T


@dataclass(frozen=True)
class BatchResult:
    """accuracy[i] and mean_cost[i]: arrays of shape (G,)*K_i for architecture i."""

    grid: np.ndarray
    archs: list[tuple[int, ...]]
    accuracy: list[np.ndarray]
    mean_cost: list[np.ndarray]
    termination: list[np.ndarray]  # (G,)*K_i + (K_i + 1,) share answered by each stage


def _exit_masks(conf: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(L, G, N) bool: exit l answers sample n at threshold g (>= 1: never)."""
    m = conf[:, None, :] >= grid[None, :, None]
    m[:, grid >= 1.0, :] = False
    return m


def evaluate_batch(conf: np.ndarray, correct: np.ndarray, archs: Sequence[tuple[int, ...]],
                   stage_costs: Sequence[Sequence[float]], grid: Sequence[float]) -> BatchResult:
    """Accuracy and mean cost of every architecture at every threshold configuration.

    conf (L, N): each exit's confidence; correct (L + 1, N) bool: each exit right, the last row
    the final classifier; archs: exit indices in cascade order; stage_costs[i]: (K_i + 1,) cost
    of reaching each stage of architecture i (as `thresholds.CascadeData.stage_cost`)."""
    grid = np.asarray(grid, dtype=np.float64)
    conf = np.asarray(conf)
    correct = np.asarray(correct, dtype=bool)
    n = conf.shape[1]
    g = len(grid)
    final = correct[-1]
    ex = _exit_masks(conf, grid)  # (L, G, N)
    pairs = sorted({(a[0], a[1]) for a in archs if len(a) == 2})
    n0 = ex.sum(-1)  # (L, G) answered by the exit
    r0 = (ex & correct[:-1, None, :]).sum(-1)  # right among them
    alone_final = ((~ex) & final[None, None, :]).sum(-1)  # (L, G) passed on and right at the final classifier
    p_n1 = p_r1 = p_rf = None
    fi: dict[int, int] = {}
    se: dict[int, int] = {}
    if pairs:
        # one product for all pairs: rows (a, i) passed on by exit a, columns (b, j) answered by exit b
        firsts = sorted({a for a, _ in pairs})
        seconds = sorted({b for _, b in pairs})
        fi = {a: k for k, a in enumerate(firsts)}
        se = {b: k for k, b in enumerate(seconds)}
        dt = np.float32 if n < (1 << 24) else np.float64  # counts stay exact in float32 below 2**24
        passed = (~ex[firsts]).reshape(-1, n).astype(dt)  # (F·G, N)
        passed_final = (passed * final[None, :].astype(dt))
        answer = ex[seconds].reshape(-1, n).astype(dt)  # (S·G, N)
        answer_right = (ex[seconds] & correct[seconds][:, None, :]).reshape(-1, n).astype(dt)
        p_n1 = (passed @ answer.T).reshape(len(firsts), g, len(seconds), g)
        p_r1 = (passed @ answer_right.T).reshape(len(firsts), g, len(seconds), g)
        p_rf = (passed_final @ (1.0 - answer).T).reshape(len(firsts), g, len(seconds), g)
        p_n1, p_r1, p_rf = (np.rint(m).astype(np.int64) for m in (p_n1, p_r1, p_rf))
    accs, costs, terms = [], [], []
    base_right = int(final.sum())
    for arch, sc in zip(archs, stage_costs):
        sc = np.asarray(sc, dtype=np.float64)
        k = len(arch)
        if k == 0:
            accs.append(np.array(base_right / n))
            costs.append(np.array(float(sc[0])))
            terms.append(np.ones(1))
            continue
        if k == 1:
            a = arch[0]
            t0 = n0[a]
            term = np.stack([t0, n - t0], axis=-1)
            right = r0[a] + alone_final[a]
            reach1 = n - t0
            costs.append((n * sc[0] + reach1 * sc[1]) / n)
        elif k == 2:
            a, b = arch
            fa, sb = fi[a], se[b]
            t0 = np.broadcast_to(n0[a][:, None], (g, g))
            t1 = p_n1[fa, :, sb, :]
            term = np.stack([t0, t1, n - t0 - t1], axis=-1)
            right = r0[a][:, None] + p_r1[fa, :, sb, :] + p_rf[fa, :, sb, :]
            costs.append((n * sc[0] + (n - t0) * sc[1] + (n - t0 - t1) * sc[2]) / n)
        else:
            data = T.CascadeData(conf=conf[list(arch)], correct=correct[list(arch) + [len(correct) - 1]],
                                 stage_cost=sc)
            r = T.exact_grid(data, grid)
            accs.append(np.asarray(r.accuracy))
            costs.append(np.asarray(r.mean_cost))
            terms.append(np.asarray(r.termination))
            continue
        accs.append(right / n)
        terms.append(term / n)
    return BatchResult(grid, [tuple(a) for a in archs], accs, costs, terms)


def best_choices(result: BatchResult, objective: T.Objective) -> list[T.Choice]:
    """Each architecture's best configuration (ties: the first in grid order, as `best_exact`)."""
    out = []
    for acc, mean, term in zip(result.accuracy, result.mean_cost, result.termination):
        out.append(T.best_exact(T.GridResult(result.grid, mean, acc, term), objective))
    return out


def grid_results(result: BatchResult, n: int) -> list[T.GridResult]:
    """Each architecture's configurations as `thresholds.GridResult` over `n` samples, so that
    `recost` prices the same cuts on other processors and `best_exact` picks as for one."""
    return [T.GridResult(result.grid, mean, acc, term, n)
            for acc, mean, term in zip(result.accuracy, result.mean_cost, result.termination)]
