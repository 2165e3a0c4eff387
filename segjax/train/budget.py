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

4. A machine that slows down after the plan (another job starts on it) is
   caught at the log steps: from the step time since the last plan or review,
   when the planned steps would end past the budget, the plan is made again
   (`review`) over the steps that fit now, the schedule rebuilt over that
   shorter count (its lr jumps down to where the shorter schedule is) and
   the step compiled once more. A plan only ever shrinks.

The plan is logged in one line and stored in every checkpoint's meta
(`schedule_steps`), so a resumed run keeps it; the last step, its learning
rate and the planned step count go into the log's last line and
eval_metrics.json (`training`). The max_minutes stop stays as a backstop
for a machine that slows down in the last steps.
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
    reviewed_at: tuple[int, float] | None = None   # (step, elapsed) the next review measures from
    window_from: int | None = None  # the step whose end starts the next measured window

    @property
    def total(self) -> int:
        """The steps this run trains: the plan, or config.train.steps."""
        return self.planned_steps or self.config_steps

    def due(self, step: int) -> bool:
        """True at the step after which the plan is made (step 1 plus MEASURED_STEPS)."""
        return (bool(self.budget_seconds) and self.planned_steps is None
                and step == self.start_step + 1 + MEASURED_STEPS and step < self.config_steps)

    def step_done(self, step: int, elapsed: float) -> None:
        """Called after every step with the training seconds so far."""
        if step == self.start_step + 1:
            self.first_step_seconds = elapsed
            if self.planned_steps is not None:  # a plan restored from a checkpoint
                self.reviewed_at = (step, elapsed)
        if step == self.window_from:
            self.reviewed_at = (step, elapsed)

    def adopt(self, planned: int, step: int, elapsed: float, *, recompiled: bool) -> None:
        """Takes `planned` as the plan after `step`; a recompiled step is left out of reviews."""
        self.planned_steps = planned
        self.reviewed_at = None if recompiled else (step, elapsed)
        self.window_from = step + 1 if recompiled else None

    def _fit(self, step: int, elapsed: float, per_step: float) -> int:
        """The last step that fits the budget at `per_step` s, one more compilation set aside."""
        compile_seconds = max((self.first_step_seconds or 0.0) - per_step, 0.0)
        left = self.budget_seconds - elapsed - compile_seconds
        return step + max(int(math.floor(SAFETY * left / per_step)), 0)

    def decide(self, step: int, elapsed: float) -> tuple[int, str]:
        """(planned steps, the log line) after `step`, `elapsed` training seconds in all."""
        measured = max(elapsed - (self.first_step_seconds or 0.0), 0.0)
        per_step = max(measured / MEASURED_STEPS, 1e-9)
        planned = min(self.config_steps, self._fit(step, elapsed, per_step))
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

    def review(self, step: int, elapsed: float) -> tuple[int, str] | None:
        """(a shorter plan, the log line) when the planned steps no longer fit, else None.

        Judged from the step time since the last plan or review, leaving out
        the step that compiled the train step again (`adopt`); a plan restored
        from a checkpoint is reviewed from the resumed run's second step on.
        The caller adopts the shorter plan with its schedule.
        """
        if (not self.budget_seconds or self.planned_steps is None or step >= self.total
                or self.reviewed_at is None):
            return None
        since_step, since_elapsed = self.reviewed_at
        if step <= since_step:
            return None
        per_step = max((elapsed - since_elapsed) / (step - since_step), 1e-9)
        self.reviewed_at = (step, elapsed)
        if elapsed + (self.total - step) * per_step <= self.budget_seconds:
            return None
        planned = max(min(self.total, self._fit(step, elapsed, per_step)), step)
        if planned >= self.total:
            return None
        line = (f"time budget: steps {since_step + 1}-{step} took {per_step:.3g} s each, so "
                f"{self.total} steps no longer fit config.train.max_minutes="
                f"{self.budget_seconds / 60.0:g}; the schedule now runs over {planned} steps "
                "and ends at its final value")
        return planned, line
