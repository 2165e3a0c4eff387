"""A time-budgeted run finishes its schedule: the step count is set from the measured step time.

`config.train.max_minutes` bounds the training time (evaluation excluded).
Cutting the run when the time is up would leave the learning-rate schedule
wherever it was (a cosine decay at a third of its peak on a machine half as
fast as the one the config was written on), so segjax plans instead:

1. The run times its train steps. Step 1 compiles; `MEASURED_STEPS` more
   steps after it give the step time t (their mean, taken after a sync).
2. The steps that fit the rest of the budget, with a `SAFETY` margin and
   one more compilation (the first step's time minus t) set aside:

       planned = min(config.train.steps,
                     step + floor(SAFETY * (budget - elapsed - compile) / t))

3. When `planned` < config.train.steps the optimiser's schedule is rebuilt
   over `planned` steps (`segjax.optim.make_optimizer`; only the state's
   `tx` changes, the optimiser state holds no step total), the train step is
   compiled once more, and the run ends at step `planned` with the schedule
   at its end, as a run with config.train.steps = planned would. The lr of the
   steps before the plan came from the longer schedule (with warmup, the plan
   falls in the warmup, where both schedules agree; without, a cosine over
   320 vs 180 steps differs by 0.5% at step 11).

The plan is logged in one line and stored in every checkpoint's meta
(`schedule_steps`), so a resumed run keeps it; the last step, its learning
rate and the planned step count go into the log's last line and
eval_metrics.json (`training`). The max_minutes stop stays as a backstop
for a machine that slows down after the plan.
"""

from __future__ import annotations

import dataclasses
import math
import time

MEASURED_STEPS = 10
SAFETY = 0.95

clock = time.perf_counter  # the loop's budget clock (tests fake a slow step through it)


@dataclasses.dataclass
class BudgetPlan:
    """Times the steps of a run with a wall-clock budget and decides its step count once."""

    budget_seconds: float
    config_steps: int
    start_step: int
    planned_steps: int | None = None   # set when decided (or restored from a checkpoint)
    first_step_seconds: float | None = None

    @property
    def total(self) -> int:
        """The steps this run trains: the plan, or config.train.steps."""
        return self.planned_steps or self.config_steps

    def due(self, step: int) -> bool:
        """True at the step after which the plan is made (step 1 plus MEASURED_STEPS)."""
        return (bool(self.budget_seconds) and self.planned_steps is None
                and step == self.start_step + 1 + MEASURED_STEPS and step < self.config_steps)

    def record_step(self, step: int, seconds: float) -> None:
        if step == self.start_step + 1:
            self.first_step_seconds = seconds

    def decide(self, step: int, elapsed: float) -> tuple[int, str]:
        """(planned steps, the log line) after `step`, `elapsed` training seconds in all."""
        measured = max(elapsed - (self.first_step_seconds or 0.0), 0.0)
        per_step = max(measured / MEASURED_STEPS, 1e-9)
        compile_seconds = max((self.first_step_seconds or 0.0) - per_step, 0.0)
        left = self.budget_seconds - elapsed - compile_seconds
        fit = max(int(math.floor(SAFETY * left / per_step)), 0)
        planned = min(self.config_steps, step + fit)
        self.planned_steps = planned
        minutes = self.budget_seconds / 60.0
        if planned < self.config_steps:
            what = (f"the schedule now runs over {planned} steps instead of "
                    f"config.train.steps={self.config_steps} and ends at its final value")
        else:
            what = f"all {self.config_steps} steps fit"
        line = (f"time budget: config.train.max_minutes={minutes:g}; steps "
                f"{self.start_step + 2}-{step} took {per_step:.3g} s each (the first, with "
                f"compilation, {self.first_step_seconds or 0.0:.3g} s); {what}")
        return planned, line
