"""What each core's application runs: its stages, one op resolver, one tensor arena.

A core may run several consecutive stages (back to back, no IPC between them) or none (the
CM0+ with stage 0 on the CM4 only serves the protocol). Its TFLite Micro set-up is shared by
its stages: one `MicroMutableOpResolver` with the union of their operators, one tensor arena
as large as the largest stage's (the interpreter is rebuilt in it when the stage changes), and
every stage's model in its flash. A core without a stage links no TFLite Micro at all: its
image is the PDL, the eenn runtime and the protocol (`ee_no_stage.c` answers the hook).
"""
from __future__ import annotations

from dataclasses import dataclass

from eenn.codegen.sizes import SubgraphSizes, resolver_calls

PROJECTS = ("proj_cm0p", "proj_cm4")  # core index -> ModusToolbox project of a PSoC 6 application


@dataclass(frozen=True)
class CoreApp:
    index: int  # core index (0 = CM0+, the protocol)
    name: str  # processor name in the profile (cm0p, cm4)
    project: str  # proj_cm0p / proj_cm4
    stages: list[int]
    ops: list[str]  # union of the stages' operators, in order of first use
    resolver_calls: list[str]
    arena_bytes: int  # the largest stage arena (0: no stage)
    model_bytes: int  # all its stages' models
    weights_bytes: int

    @property
    def runs_stages(self) -> bool:
        return bool(self.stages)

    @property
    def resolver_size(self) -> int:
        return len(self.ops)

    @property
    def stages_text(self) -> str:
        """"stage 1", "stages 0, 1" or "no stage" (for comments and the README)."""
        if not self.stages:
            return "no stage"
        if len(self.stages) == 1:
            return f"stage {self.stages[0]}"
        return "stages " + ", ".join(str(k) for k in self.stages)


def plan_cores(names: list[str], stage_cores: list[int], sizes: list[SubgraphSizes]) -> list[CoreApp]:
    """One CoreApp per core; the CM0+ (core 0) takes CMSIS-NN's int8-only kernel variants."""
    apps = []
    for c, name in enumerate(names):
        ks = [k for k, sc in enumerate(stage_cores) if sc == c]
        ops: list[str] = []
        for k in ks:
            ops += [op for op in sizes[k].ops if op not in ops]
        apps.append(CoreApp(index=c, name=name, project=PROJECTS[c], stages=ks, ops=ops,
                            resolver_calls=resolver_calls(ops, int8_kernels=(c == 0)),
                            arena_bytes=max((sizes[k].arena_bytes for k in ks), default=0),
                            model_bytes=sum(sizes[k].model_bytes for k in ks),
                            weights_bytes=sum(sizes[k].weights_bytes for k in ks)))
    return apps
