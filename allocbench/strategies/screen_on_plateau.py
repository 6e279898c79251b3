from dataclasses import dataclass, replace

import numpy as np

from allocbench.protocols import Outcome, group_means
from allocbench.strategies.pilot_commit import PilotCommit
from allocbench.strategy import StepContext, Strategy, hyper, register

STALL_Z = 2.0  # standard errors added to the recent slope: only a confident stall switches


@register("screen_on_plateau")
@dataclass
class ScreenOnPlateau(Strategy):
    """Uniform groups while they still pay; Pilot-Commit screening once uniform training stalls
    under gradient noise. allocbench's own rule (no paper); it acts on the regime the learner
    reports (``StepContext.last_update``).

    Why: under Adam a step's progress grows with its signal-to-noise ratio, about
    1 / sqrt(1 + B_simple / N) for N trained rollouts, so buying informative samples by
    screening pays per step only in proportion to a square root while its pilots cost rollouts
    linearly: early in training, or when steps are saturated (B_simple << N), uniform groups are
    the cheapest progress. But noisy steps also cost something (the policy drifts), and once a
    uniform run's progress has stalled against that cost its rollouts buy nothing, while cleaner
    screened batches hold a higher plateau: that is where Pilot-Commit's published speed-ups come
    from (its GRPO baselines plateau or turn down).

    Rule, each step:
    1. Track the train pass rate (the mean reward of the uniform groups; when screening, of the
       pilots, which are fresh prompts too).
    2. Uniform (GRPO's B x n) until a *stall*: over the last ``window`` steps, the pass rate's
       least-squares slope plus two standard errors is below ``stall_fraction`` x the run's
       average rate since its first window. Small, noisy batches rarely prove a stall, so the
       rule stays uniform where it cannot tell.
    3. At a stall, screen if it would pay: the screened batch's signal-to-noise gain
       sqrt((1 + r) / (1 + (1 - z) r)) is at least ``min_snr_gain`` (r = B_simple / N and z =
       the zero-advantage share, both over the window's uniform steps; collapsed groups carry no
       signal, so screening them out divides the noise-to-signal ratio by 1 / (1 - z)), and the
       expected cost of a screened step, 1 + (p / n) (1 - k(p)) / k(p) uniform steps for pilots
       of p with keep rate k(p), is at most ``max_cost_ratio``. k(p) is estimated, without
       bias, from the window's uniform groups: the hypergeometric chance that p of a group's n
       rollouts land in Pilot-Commit's keep band. The pilot size is the p (2 to
       ``max_pilot_fraction`` x n) with the cheapest expected step.
    4. Once screening, it stays (Pilot-Commit with pilot_n = p and commit_n = n - p, the
       recipe's keep band and buffer, no eviction): leaving would hand back the plateau it holds.
    An unknown noise scale (a learner that does not measure it) counts as noise-limited.
    """

    window: int = hyper(
        100, "steps in the stall test's window (the first switch can come at 2 x window)",
        low=5, search=(25, 200), log=True)
    stall_fraction: float = hyper(
        0.25, "a stall: the window's slope (+2 standard errors) below this share of the run's "
        "average progress per step", low=0.0, high=1.0, search=(0.05, 0.5))
    min_snr_gain: float = hyper(
        1.1, "screen only if it raises the step's signal-to-noise ratio at least this much",
        low=1.0, search=(1.0, 1.5))
    max_cost_ratio: float = hyper(
        2.0, "screen only if a screened step costs at most this many uniform steps",
        low=1.0, search=(1.2, 3.0))
    max_pilot_fraction: float = hyper(
        0.5, "largest pilot considered, as a share of n", low=0.0, high=1.0, open_low=True,
        open_high=True)
    max_num_gen_batches: int = hyper(
        10, "screening's generation rounds per step before giving up; 0 = unbounded", low=0)

    def collect(self, ctx: StepContext) -> list[Outcome]:
        memory = ctx.memory
        history = memory.setdefault("pass_rate", [])
        if memory.get("pilot_n") is None:
            self.observe(ctx, memory)
            if self.stalled(np.array(history)):
                memory["pilot_n"] = self.plan(memory, ctx.train_batch, ctx.group_size)
        if memory.get("pilot_n") is None:
            prompts = ctx.candidates.take(ctx.train_batch)
            groups = list(ctx.sampler.sample({int(i): ctx.group_size for i in prompts}).values())
            sizes, means = group_means(groups)
            history.append(float(sizes @ means / sizes.sum()))
            correct = np.rint(means[sizes == ctx.group_size] * ctx.group_size).astype(int)
            memory.setdefault("correct_counts", []).append(np.bincount(correct, minlength=ctx.group_size + 1))
            return groups
        screen = self.screener(memory["pilot_n"], ctx.group_size).bind(ctx.train_batch, ctx.group_size)
        pilots = PilotRecorder(ctx.sampler)
        groups = screen.collect(replace(ctx, sampler=pilots, memory=memory.setdefault("screen", {})))
        history.append(pilots.pass_rate())
        return groups

    def screener(self, pilot_n: int, group_size: int) -> PilotCommit:
        # never evicting: a pilot of a few rollouts cannot tell a solved prompt from an easy one
        # (3 of 3 right at pass rate 0.7 one time in three), and evicting those drains the data
        return PilotCommit(pilot_fraction=pilot_n / group_size, pilot_n=pilot_n, evict_threshold=np.inf,
                           max_num_gen_batches=self.max_num_gen_batches)

    def observe(self, ctx: StepContext, memory: dict) -> None:
        """Keep the learner's noise report of the last uniform step, one window's worth."""
        report = ctx.last_update
        if ctx.step > 1:
            memory.setdefault("noise", []).append(
                [report.get("noise_trace", np.nan), report.get("noise_grad_sq", np.nan),
                 report.get("zero_adv_share", np.nan)])
        for key in ("noise", "correct_counts"):
            del memory.get(key, [])[:1 - self.window]  # this step's counts come next

    def stalled(self, history: np.ndarray) -> bool:
        if len(history) < 2 * self.window:
            return False
        recent = history[-self.window:]
        t = np.arange(self.window) - (self.window - 1) / 2
        slope = t @ recent / (t @ t)
        residual = recent - recent.mean() - slope * t
        se = np.sqrt(residual @ residual / (self.window - 2) / (t @ t))
        average = (recent.mean() - history[: self.window].mean()) / (len(history) - self.window)
        return slope + STALL_Z * se < self.stall_fraction * average

    def snr_gain(self, memory: dict, batch_rollouts: int) -> float:
        """How much screening out the collapsed groups raises a step's signal-to-noise ratio."""
        trace, grad_sq, zero = np.array(memory.get("noise", [[np.nan] * 3]), dtype=float).T
        zero_share = float(np.nanmean(zero)) if np.isfinite(zero).any() else 0.0
        known = np.isfinite(trace) & np.isfinite(grad_sq)
        grad_total = grad_sq[known].sum()
        ratio = trace[known].sum() / grad_total / batch_rollouts if grad_total > 0 else np.inf
        if np.isinf(ratio):
            return 1 / np.sqrt(max(1 - zero_share, 1e-12))
        return float(np.sqrt((1 + ratio) / (1 + (1 - zero_share) * ratio)))

    def plan(self, memory: dict, train_batch: int, group_size: int) -> int | None:
        """The pilot size to screen with, or None when screening would not pay."""
        if self.snr_gain(memory, train_batch * group_size) < self.min_snr_gain:
            return None
        counts = np.sum(memory.get("correct_counts", [np.zeros(group_size + 1)]), axis=0)
        pilots = np.arange(2, int(self.max_pilot_fraction * group_size) + 1)
        if counts.sum() == 0 or len(pilots) == 0:
            return None
        cost = np.array([self.step_cost(int(p), group_size, counts) for p in pilots])
        best = int(np.argmin(cost))
        return int(pilots[best]) if cost[best] <= self.max_cost_ratio else None

    def step_cost(self, pilot_n: int, group_size: int, counts: np.ndarray) -> float:
        """A screened step's expected rollouts in uniform steps, 1 + (p / n) (1 - k) / k: each
        kept prompt costs n, each rejected one its p pilots. k = the chance a prompt's pilot lands
        in the keep band: for a uniform group with c of n correct, a pilot of p is a
        hypergeometric draw of x correct from it."""
        log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, group_size + 1)))])

        def log_choose(a, b):
            return log_factorial[a] - log_factorial[b] - log_factorial[a - b]

        c, x = np.arange(group_size + 1)[:, None], np.arange(pilot_n + 1)[None, :]
        possible = (x <= c) & (pilot_n - x <= group_size - c)
        x_ok, rest_ok = np.minimum(x, c), np.clip(pilot_n - x, 0, group_size - c)
        log_p = log_choose(c, x_ok) + log_choose(group_size - c, rest_ok) - log_choose(group_size, pilot_n)
        draw = np.where(possible, np.exp(log_p), 0.0)
        kept = self.screener(pilot_n, group_size).keep(np.arange(pilot_n + 1) / pilot_n)
        keep_rate = counts @ draw @ kept / counts.sum()
        return 1 + pilot_n / group_size * (1 - keep_rate) / keep_rate if keep_rate > 0 else np.inf


class PilotRecorder:
    """The step's sampler, passed through, remembering the pilots' rewards: fresh prompts drawn
    in data-loader order, so their mean is the policy's train pass rate."""

    def __init__(self, sampler):
        self.sampler = sampler
        self.rewards: list[np.ndarray] = []

    def sample(self, requests, pilot=None):
        outcomes = self.sampler.sample(requests, pilot=pilot)
        self.rewards += [outcomes[i].rewards for i in (pilot or {})]
        return outcomes

    def pass_rate(self) -> float:
        return float(np.concatenate(self.rewards).mean())
