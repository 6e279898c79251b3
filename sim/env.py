"""The simulated environment: a pool of prompts whose pass rates evolve under training.

Prompts. Prompt i has a logit ``b_i + a_i . c(s) - drift * mean(u^2)``: an offset ``b_i`` (its
difficulty), loadings ``a_i >= 0`` on ``n_skills`` latent skills (Dirichlet-distributed, summing
to ``loading_scale`` times a log-normal factor of spread ``loading_spread``: how learnable the
prompt is), the shared skill vector ``s`` passed through ``c(s) = cap * tanh(s / cap)`` so
skill saturates (``skill_saturation = "log"``: ``cap * asinh(s / cap)``, linear up to about the
cap and logarithmic after it, returns that diminish without a ceiling), and ``u``, the
policy's displacement along ``nuisance_dims`` directions no skill uses. Its pass rate is the
sigmoid of the logit. Training on one prompt moves every prompt that shares its skills. The
held-out eval set is drawn from the same distribution and scored as expected pass@1; its skill
term is multiplied by ``eval_transfer`` (1 by default), for a held-out set that leans on what
the pool rarely trains (the tiny tier's real held-out gains are 0.78x its pool's, below).
Rollout lengths are log-normal, longer when wrong, capped at ``max_tokens``.

Gradient. The policy's parameters are ``theta = (s, u)``. A GRPO step on groups g with n_g
rollouts, mean reward m_g and reward std sigma_g = sqrt(m_g (1 - m_g)) has the signal

    G = sum_g n_g sigma_g d logit_g / d theta / N

(the group-normalised advantage summed against d log p / d logit is n_g sigma_g: zero for all-0
or all-1 groups, largest at m = 1/2; N, the rollouts in the batch, divides as a token-mean
loss does). For ``s`` that is ``a_g`` times the chain rule through c; for ``u`` it is the pull
back towards 0, ``-2 drift u / nuisance_dims``, the same for every prompt. Every rollout also
carries noise: rollout j contributes A_j (its advantage) times a random direction whose
squared norm has mean ``sigma_1^2``, so the step's noise has covariance
``sigma_1^2 (sum_j A_j^2) / N^2`` spread evenly over the ``n_skills + nuisance_dims``
coordinates. With normalised advantages sum_j A_j^2 is the number of informative rollouts I
(those of groups with sigma_g > 0; collapsed groups bring neither signal nor noise), so a
step's signal-to-noise ratio grows like sqrt(I). ``sigma_1^2`` is set from the scenario's
``noise_scale`` B: it makes B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018, per rollout)
equal B for the initial policy on uniformly drawn groups of the baseline's n. Each update
reports its own B_simple (``noise_trace / noise_grad_sq``, the same columns as the real
learner's) and its informative samples.

Optimizer. ``sgd``: theta += lr * g, so a step shrinks as zero-variance groups dilute it.
``adam`` (the default; every real recipe uses AdamW): running first and second moments with
``adam_beta1``, ``adam_beta2`` and bias correction, theta += lr * m / (sqrt(v) + eps). Per
coordinate, when the signal dominates the step saturates near lr whatever the batch (extra
samples buy nothing: cheap steps win); when noise dominates it scales with the signal-to-noise
ratio (extra informative samples pay: screening's bet).

Why noisy steps cost something. The noise moves the policy too. Along the skills it is a random
walk that the skill curve's curvature turns into a loss (near the cap, under tanh); along the
nuisance directions, which every prompt's logit pays for through ``drift * mean(u^2)``, it is a
random walk held back only by the signal's pull towards 0. Under Adam that pull, in units of
the noise, grows like sqrt(I): runs whose steps carry few informative rollouts (late GRPO, when
most groups have collapsed) settle at a larger displacement, so they plateau lower or turn
down, while cleaner batches (screened groups) hold a higher plateau. ``drift = 0`` removes the
mechanism.

Stale rollouts. A rollout trained after the weights that drew it were updated (a pilot
committed steps later, SPEED's screened prompts, an asynchronous pipeline's lag) is scored by
the learner as if it were fresh, but its completions show what the old policy could do:
besides its signal, fitting them pulls the skills back towards the old ones. Rollout j, drawn
by weights whose skills were s_j, adds ``stale_pull * w_j^2 * (s_j - s) / N`` to the skills'
gradient (its importance weight squared, as its noise; collapsed groups add nothing, fresh
rollouts nothing). The nuisance directions get no pull: no reward depends on them, and a pull
towards their older displacement would undo part of the noise's random walk, a free denoising
that made stale rollouts *help* in noise-dominated runs (measured: a pull on every coordinate,
fitted to the noise-limited runs, put speed at 1.19x where the real runs have 0.85x). The pull
is coherent across a batch, so the measured |G|^2 grows with it, as it does in the real runs
whose batches hold stale rollouts; under Adam it takes a share of every step, so a stale batch
teaches less per step than a fresh one, most where the skills move most per step.
``stale_pull = 0`` (the default) makes a stale rollout as good as a fresh one. ``allocbench
calibrate --params stale_pull`` fits it to grpo run with a lag (``grpo.lag``): GRPO's own
sampling with every rollout stale.

Replayed rollouts. A rollout trained again (a strategy's cached answer, ``Outcome.reused``)
brings its signal again, at the policy's current gradient, and its noise: the part of its
gradient particular to that completion, which does not change when it is replayed. With
``replay_window`` k > 0, rollout j's noise direction xi_j (the one its A_j multiplies) is the
one it had at its first training, for k updates after it: a replay repeats that noise where a
new rollout would average it down, and under Adam's running mean a repeated direction adds up
across steps. The fresh rollouts' noise is still drawn as one sum; a replayed rollout's xi_j is
drawn the first time it is replayed, conditioned on the sum it was part of (Gaussian: mean
c_j Z / C, covariance sigma^2 (I - c c^T / C) per coordinate, c the rollouts' shares A_j w_j / N
and C their summed squares), so a run that replays nothing draws exactly what it drew before,
and every xi_j has the same distribution as when it was drawn alone. A rollout replayed after
the window, or one whose first training was in a collapsed group (no noise then), draws a
direction of its own, kept for the window from then. ``replay_window = 0`` (the default) draws
fresh noise at every training: a replay is free denoising.

Features. ``Environment.features`` gives strategies that predict pass rates (pcl, gps) a noisy
view of what sets them: prompt i's offset and loadings, each column standardised over the
prompts, rotated by a fixed random projection with orthonormal rows into 2 (1 + n_skills)
dimensions, plus Gaussian noise of std ``feature_noise`` per coordinate, drawn once per prompt.
The features stay fixed while the pass rates move with training, so a predictor must keep
learning the map, as a value model does on a policy's hidden states. They cost no model pass
(the ledger counts the prompts, 0 tokens).

Everything is vectorised numpy over prompts and rollouts; a seed fixes the pool, the eval set,
every reward and length drawn, every update's noise and the features.
"""

from __future__ import annotations

import math
import pickle
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from allocbench.metrics import solved_shares
from allocbench.protocols import EarlyStop, Environment, Outcome, importance_means
from sim.scenarios import Scenario, get_scenario

ADAM_EPS = 1e-8
REFERENCE_PROMPTS = 4_096  # prompts of the pool that set the noise scale's reference signal


def skill_curve(sc: Scenario, skill: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """c(s), the part of a logit each skill adds per unit of loading, and dc/ds (the gradient's
    chain rule), under the scenario's ``skill_saturation``."""
    x = skill / sc.skill_cap
    if sc.skill_saturation == "log":
        return sc.skill_cap * np.arcsinh(x), 1.0 / np.sqrt(1.0 + x * x)
    return sc.skill_cap * np.tanh(x), 1.0 / np.cosh(x) ** 2


class SimWorld:
    """The state the sampler, learner and evaluator share: prompts, the parameters (skills and
    nuisance displacement) and the optimizer's moments."""

    def __init__(self, sc: Scenario, seed: int):
        pool_rng, self.rollout_rng, self.update_rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence([seed, 7]).spawn(3))
        self.sc, self.seed = sc, seed
        self._features: np.ndarray | None = None  # drawn on first use (features)
        total = sc.pool_size + sc.eval_size
        weights, means, stds = (np.array(col, dtype=float) for col in zip(*sc.offsets))
        component = pool_rng.choice(len(weights), size=total, p=weights / weights.sum())
        self.offset = pool_rng.normal(means[component], stds[component])
        self.loading = sc.loading_scale * pool_rng.dirichlet(
            np.full(sc.n_skills, sc.loading_concentration), size=total)
        if sc.loading_spread > 0:  # drawn only when used, so other scenarios keep their pools
            spread = sc.loading_spread
            self.loading *= np.exp(spread * pool_rng.standard_normal(total) - spread**2 / 2)[:, None]
        dims = sc.n_skills + sc.nuisance_dims
        self.params = np.zeros(dims)  # (skills, nuisance displacement)
        self.moment1, self.moment2, self.optimizer_steps = np.zeros(dims), np.zeros(dims), 0
        self.eval_ids = np.arange(sc.pool_size, total)
        # what the skills' contribution to each prompt's logit is multiplied by (eval_transfer
        # on the held-out set); the loadings themselves, which the gradient and the features
        # read, stay as drawn
        self.transfer = np.where(np.arange(total) < sc.pool_size, 1.0, sc.eval_transfer)
        self.drawn = 0  # rollouts sampled so far: the next rollout's id
        # with stale_pull: the skills of each version of the weights and the first rollout id it drew
        self.versions, self.version_start = [self.skill.copy()], [0]
        self.noise_var = sc.noise_scale * self._reference_signal()  # sigma_1^2: one rollout's noise
        self.replay = ReplayNoise(sc.replay_window, dims, self.noise_var) if sc.replay_window else None

    @property
    def skill(self) -> np.ndarray:
        return self.params[:self.sc.n_skills]

    @property
    def nuisance(self) -> np.ndarray:
        return self.params[self.sc.n_skills:]

    def _reference_signal(self) -> float:
        """|G|^2 / f of the initial policy on uniformly drawn groups of the baseline's n: G the
        expected per-rollout signal, f the expected share of informative rollouts. With
        sigma_1^2 = B |G|^2 / f, B_simple = sigma_1^2 f / |G|^2 = B at the start."""
        ids = np.arange(min(self.sc.pool_size, REFERENCE_PROMPTS))
        p, n = self.pass_rate(ids), self.sc.group_size
        k = np.arange(n + 1)
        # the group's reward std sqrt(m (1 - m)), m ~ Binomial(n, p) / n, in expectation
        log_pmf = (log_choose(n, k) + k * np.log(np.clip(p[:, None], 1e-300, 1))
                   + (n - k) * np.log(np.clip(1 - p[:, None], 1e-300, 1)))
        expected_std = np.exp(log_pmf) @ np.sqrt(k / n * (1 - k / n))
        informative_share = float(np.mean(1 - p**n - (1 - p) ** n))
        signal = expected_std @ self.loading[ids] / len(ids)  # chain rule = 1 at skill 0
        return float(signal @ signal) / max(informative_share, 1e-12)

    def save(self, folder: Path) -> None:
        state = dict(params=self.params, moment1=self.moment1, moment2=self.moment2,
                     optimizer_steps=self.optimizer_steps, rollout_rng=self.rollout_rng.bit_generator.state,
                     update_rng=self.update_rng.bit_generator.state, drawn=self.drawn,
                     versions=self.versions, version_start=self.version_start, replay=self.replay)
        (folder / "world.pkl").write_bytes(pickle.dumps(state))

    def load(self, folder: Path) -> None:
        state = pickle.loads((folder / "world.pkl").read_bytes())
        if "params" not in state:
            raise ValueError(f"{folder}: a checkpoint of an older simulator (no optimizer state); start the run again")
        self.params, self.moment1, self.moment2 = state["params"], state["moment1"], state["moment2"]
        self.optimizer_steps, self.drawn = state["optimizer_steps"], state["drawn"]
        self.versions = state.get("versions", [self.skill.copy()])
        self.version_start = state.get("version_start", [self.drawn])
        self.replay = state.get("replay", self.replay)
        self.rollout_rng.bit_generator.state = state["rollout_rng"]
        self.update_rng.bit_generator.state = state["update_rng"]

    def features(self, ids: np.ndarray) -> np.ndarray:
        """The features of prompts ``ids`` (train or held-out): float array (len(ids), 2 (1 +
        n_skills)), the same for a prompt at every call of a world with this seed."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= len(self.offset)):
            raise ValueError("features asked for a prompt outside the pool and the held-out set")
        if self._features is None:
            self._features = self._draw_features()
        return self._features[ids]

    def _draw_features(self) -> np.ndarray:
        # their own random stream, so drawing them changes no pool, reward or update noise
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7, 1]))
        source = np.column_stack([self.offset, self.loading])
        spread = source.std(axis=0)
        source = (source - source.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
        k = source.shape[1]
        rotation, _ = np.linalg.qr(rng.standard_normal((2 * k, k)))  # (2k, k), orthonormal columns
        noise = self.sc.feature_noise * rng.standard_normal((len(source), 2 * k))
        return source @ rotation.T + noise

    def pass_rate(self, ids: np.ndarray) -> np.ndarray:
        sc = self.sc
        capped, _ = skill_curve(sc, self.skill)
        drift = sc.drift * float(np.mean(self.nuisance**2)) if sc.nuisance_dims else 0.0
        # a logit below about -709 overflows exp to inf, and 1 / (1 + inf) = 0 is the right limit
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-(self.offset[ids] + (self.loading[ids] @ capped) * self.transfer[ids] - drift)))

    def drawn_skills(self, rollout_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The versions of the weights that drew ``rollout_ids`` (index per rollout) and those
        versions' skills (one row per version, in the index's order)."""
        version = np.searchsorted(self.version_start, rollout_ids, side="right") - 1
        present, index = np.unique(version, return_inverse=True)
        return index, np.stack([self.versions[v] for v in present])

    def step(self, gradient: np.ndarray) -> None:
        """One optimizer step up the (noisy) gradient."""
        self._step(gradient)
        if self.sc.stale_pull > 0:  # only then is a rollout's version ever read
            self.versions.append(self.skill.copy())
            self.version_start.append(self.drawn)

    def _step(self, gradient: np.ndarray) -> None:
        sc = self.sc
        if sc.optimizer == "sgd":
            self.params += sc.lr * gradient
            return
        self.optimizer_steps += 1
        t, b1, b2 = self.optimizer_steps, sc.adam_beta1, sc.adam_beta2
        self.moment1 = b1 * self.moment1 + (1 - b1) * gradient
        self.moment2 = b2 * self.moment2 + (1 - b2) * gradient**2
        mean, square = self.moment1 / (1 - b1**t), self.moment2 / (1 - b2**t)
        self.params += sc.lr * mean / (np.sqrt(square) + ADAM_EPS)


def log_choose(n, k) -> np.ndarray:
    """log(n choose k), elementwise over arrays (numpy has no log-gamma; scipy is not a
    dependency)."""
    lgamma = np.vectorize(math.lgamma, otypes=[float])
    n, k = np.asarray(n, dtype=float), np.asarray(k, dtype=float)
    return lgamma(n + 1) - (lgamma(k + 1) + lgamma(n - k + 1))


def rollout_shares(groups: list[Outcome], mean: np.ndarray, std: np.ndarray,
                   total: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per trained rollout, in the groups' order: its id, its share of the step's noise
    w_j A_j / N (A_j its normalised advantage; 0 in a collapsed group and for an aborted
    rollout) and whether it is replayed (its group's last ``reused`` entries)."""
    sizes = np.fromiter((len(g.rewards) for g in groups), dtype=np.int64, count=len(groups))
    replays = np.fromiter((g.reused for g in groups), dtype=np.int64, count=len(groups))
    group = np.repeat(np.arange(len(groups)), sizes)
    position = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    rewards = np.concatenate([g.rewards for g in groups])
    weights = np.concatenate([g.importance for g in groups])
    spread = std[group] * total
    share = np.divide(weights * (rewards - mean[group]), spread, out=np.zeros(len(rewards)), where=spread > 0)
    return np.concatenate([g.rollout_ids for g in groups]), share, position >= (sizes - replays)[group]


@dataclass(slots=True)
class _Update:
    """One recorded update: its trained groups (read only when a replay asks), the fresh
    rollouts' noise sum Z and summed squared shares C, less what replays have fixed since."""

    index: int
    groups: tuple
    mean: np.ndarray
    std: np.ndarray
    total: int
    residual: np.ndarray
    residual_square: float
    ids: np.ndarray | None = None  # the fresh informative rollouts' ids, sorted (on first use)
    shares: np.ndarray | None = None  # their shares, in the ids' order


class ReplayNoise:
    """The noise directions of replayed rollouts (``replay_window``; the module docstring): the
    last ``window`` updates' fresh noise sums, and each replayed rollout's direction, kept
    until ``window`` updates after its first training."""

    def __init__(self, window: int, dims: int, rollout_var: float):
        self.window, self.dims = window, dims
        self.scale = math.sqrt(rollout_var / dims)  # one rollout's noise, per coordinate
        self.updates = 0  # updates recorded: the index of the one in progress
        self.recent: deque[_Update] = deque(maxlen=window)
        # the kept directions, one chunk per update that drew them: (ids sorted, xi, the update
        # each direction dates from); chunks are appended, never copied into one array
        self.kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def record(self, groups: list[Outcome], mean: np.ndarray, std: np.ndarray, total: int,
               noise: np.ndarray, square: float) -> None:
        """The update in progress drew the noise sum ``noise`` over its fresh rollouts, whose
        shares' squares sum to ``square``."""
        self.recent.append(_Update(self.updates, tuple(groups), mean, std, total, noise, square))
        self.updates += 1
        self.kept = [chunk for chunk in self.kept if chunk[2].max() >= self.updates - self.window]

    def directions(self, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The noise directions xi of rollouts ``ids`` replayed in the update in progress,
        (len(ids), dims): a kept one, else drawn conditioned on its first update's sum (and
        kept), else drawn alone (and kept; an id of -1, unknown, is neither looked up nor kept)."""
        xi = np.empty((len(ids), self.dims))
        unknown = ids < 0
        xi[unknown] = self.scale * rng.standard_normal((int(unknown.sum()), self.dims))
        unique, inverse = np.unique(ids[~unknown], return_inverse=True)
        found, start = np.empty((len(unique), self.dims)), np.full(len(unique), self.updates)
        kept = np.zeros(len(unique), dtype=bool)
        for chunk_ids, chunk_xi, chunk_from in self.kept:
            at = self._find(chunk_ids, unique)
            hit = (at >= 0) & (chunk_from[at] >= self.updates - self.window)
            found[hit], kept = chunk_xi[at[hit]], kept | hit
        known = kept.copy()
        for update in self.recent:
            if known.all():
                break
            if update.ids is None:
                self._shares(update)
            at = self._find(update.ids, unique)
            hit = ~known & (at >= 0)
            if hit.any():
                found[hit] = self._conditioned(update, update.shares[at[hit]], rng)
                start[hit], known = update.index, known | hit
        alone = ~known
        found[alone] = self.scale * rng.standard_normal((int(alone.sum()), self.dims))
        if not kept.all():
            self.kept.append((unique[~kept], found[~kept], start[~kept]))  # unique is sorted
        xi[~unknown] = found[inverse]
        return xi

    @staticmethod
    def _find(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Each of ``ids``' position in ``sorted_ids``, -1 where it is not there."""
        if not len(sorted_ids):
            return np.full(len(ids), -1)
        at = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
        return np.where(sorted_ids[at] == ids, at, -1)

    @staticmethod
    def _shares(update: _Update) -> None:
        ids, share, replayed = rollout_shares(list(update.groups), update.mean, update.std, update.total)
        fresh = ~replayed & (share != 0)
        order = np.argsort(ids[fresh], kind="stable")
        update.ids, update.shares = ids[fresh][order], share[fresh][order]

    def _conditioned(self, update: _Update, c: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Directions of rollouts with shares ``c`` in ``update``'s noise sum, drawn given what
        is left of it (Z, C): mean c Z / C, covariance scale^2 (I - c c^T / C) per coordinate,
        as (I - alpha c c^T) E with E ~ N(0, scale^2 I)."""
        noise = self.scale * rng.standard_normal((len(c), self.dims))
        left, square = update.residual, update.residual_square
        if square <= 0:  # the sum is spent (only by rounding): nothing left to condition on
            return noise
        q = float(c @ c)
        alpha = (1 - math.sqrt(max(1 - q / square, 0.0))) / q
        xi = np.outer(c, left) / square + noise - alpha * np.outer(c, c @ noise)
        update.residual, update.residual_square = left - c @ xi, max(square - q, 0.0)
        return xi


class SimSampler:
    def __init__(self, world: SimWorld):
        self.world = world

    def sample(self, requests: Mapping[int, int], stop: EarlyStop | None = None) -> list[Outcome]:
        w, sc, rng = self.world, self.world.sc, self.world.rollout_rng
        ids = np.fromiter(requests.keys(), dtype=np.int64, count=len(requests))
        counts = np.fromiter(requests.values(), dtype=np.int64, count=len(requests))
        if ids.min() < 0 or ids.max() >= sc.pool_size:
            raise ValueError("request for a prompt outside the training pool")
        p = np.repeat(w.pass_rate(ids), counts)
        rewards = (rng.random(len(p)) < p).astype(np.float64)
        mean_len = np.where(rewards > 0, sc.len_correct, sc.len_wrong)
        # log-normal with the given mean: mu = log(mean) - sigma^2 / 2
        lengths = mean_len * np.exp(sc.len_sigma * rng.standard_normal(len(p)) - sc.len_sigma**2 / 2)
        tokens = np.minimum(np.rint(lengths), sc.max_tokens).astype(np.int64)
        weights = None if stop is None else self._stop_early(rewards, tokens, stop)
        ends = np.cumsum(counts).tolist()
        # rollout ids: a running count of the rollouts drawn (no random draw)
        rollout_ids = np.arange(w.drawn, w.drawn + len(p), dtype=np.int64)
        w.drawn += len(p)
        # slicing views per prompt; np.split costs several times more for thousands of pieces
        return [Outcome(i, rewards[a:b], tokens[a:b], 0, rollout_ids[a:b],
                        None if weights is None else weights[a:b])
                for i, a, b in zip(ids.tolist(), [0] + ends[:-1], ends)]

    def _stop_early(self, rewards: np.ndarray, tokens: np.ndarray, stop: EarlyStop) -> np.ndarray:
        """Marker-gated abort, in place on ``rewards`` and ``tokens``; returns the importance
        weights. A simulated rollout answers at its last token, so one longer than
        ``abort_after`` has no marker there: it is aborted (cut to ``abort_after`` tokens,
        reward 0, weight 0) unless a draw below ``keep_prob`` lets it finish (weight 1 /
        keep_prob). Only those rollouts draw, from the rollout stream."""
        weights = np.ones(len(rewards))
        late = np.flatnonzero(tokens > stop.abort_after)
        kept = self.world.rollout_rng.random(len(late)) < stop.keep_prob
        aborted = late[~kept]
        weights[late[kept]] = 1.0 / stop.keep_prob
        weights[aborted], rewards[aborted], tokens[aborted] = 0.0, 0.0, stop.abort_after
        return weights


class SimLearner:
    def __init__(self, world: SimWorld):
        self.world = world

    def update(self, groups: list[Outcome]) -> dict:
        w, sc = self.world, self.world.sc
        if not groups:
            return {"signal": 0.0, "informative_samples": 0, "zero_adv_share": float("nan")}
        ids = np.fromiter((g.prompt_id for g in groups), dtype=np.int64, count=len(groups))
        # n: each group's rollouts as weights count them (their sum; plain counts without early stopping)
        n, squares, trained, mean = importance_means(groups)
        total = int(trained.sum())  # the rollouts trained on: the token-mean's denominator
        if total == 0:  # every rollout aborted: nothing to train on
            return {"signal": 0.0, "informative_samples": 0, "zero_adv_share": float("nan")}
        std = np.sqrt(mean * (1 - mean))
        informative = int(trained[std > 0].sum())
        # sum of squared normalised advantages: each rollout's A^2 times its weight^2
        noise_samples = float(squares[std > 0].sum())
        # per-rollout signal of each group along (skills, nuisance directions)
        _, chain = skill_curve(sc, w.skill)
        pull = -2.0 * sc.drift * w.nuisance / max(sc.nuisance_dims, 1)
        per_rollout = std[:, None] * w.loading[ids] * chain  # the skills' part; the nuisance's is std * pull
        mass = float(n @ std)
        summed = np.concatenate([n @ per_rollout, mass * pull])
        if sc.stale_pull > 0:
            summed[:sc.n_skills] += sc.stale_pull * self._pull_to_drawing_skills(groups, std > 0)
        noise_std = np.sqrt(w.noise_var * noise_samples / len(w.params)) / total
        fresh_square, replay_noise = noise_samples / total**2, None
        if w.replay is not None and any(g.reused for g in groups):
            # a replayed rollout repeats its own noise direction; the fresh ones' noise stays one sum
            ids, share, replayed = rollout_shares(groups, mean, std, total)
            repeated = replayed & (share != 0)
            fresh_square = max(fresh_square - float(share[repeated] @ share[repeated]), 0.0)
            noise_std = np.sqrt(w.noise_var * fresh_square / len(w.params))
            replay_noise = share[repeated] @ w.replay.directions(ids[repeated], w.update_rng)
        noise = noise_std * w.update_rng.standard_normal(len(w.params))
        if w.replay is not None:
            w.replay.record(groups, mean, std, total, noise, fresh_square)
        gradient = summed / total + noise
        w.step(gradient if replay_noise is None else gradient + replay_noise)
        # |E g|^2 without the batch's own sampling spread (the estimator the real learner uses,
        # over groups: the cross terms of the sum), and the noise's trace per rollout
        pairs = float(n.sum())**2 - float(n @ n)
        own = float((n**2) @ (per_rollout**2).sum(axis=1)) + float((n * std) @ (n * std)) * float(pull @ pull)
        grad_sq = (float(summed @ summed) - own) / pairs if pairs > 0 else float("nan")
        trace = w.noise_var * noise_samples / total
        return {"signal": mass / total, "noise_grad_sq": grad_sq, "noise_trace": trace,
                "noise_scale": trace / grad_sq if grad_sq else float("nan"),
                "informative_samples": informative, "zero_adv_share": 1 - informative / total}


    def _pull_to_drawing_skills(self, groups: list[Outcome], informative: np.ndarray) -> np.ndarray:
        """sum over the informative groups' trained rollouts of w^2 (s_drawn - s): each rollout
        drawn by older weights pulls the skills back towards theirs (0 for a fresh one)."""
        w = self.world
        kept = [g for g, keep in zip(groups, informative) if keep]
        if not kept:
            return np.zeros(w.sc.n_skills)
        ids = np.concatenate([g.rollout_ids for g in kept])
        mass = np.concatenate([g.importance for g in kept]) ** 2
        index, drawn = w.drawn_skills(ids)
        return np.bincount(index, weights=mass, minlength=len(drawn)) @ drawn - mass.sum() * w.skill


class SimEvaluator:
    def __init__(self, world: SimWorld):
        self.world = world

    def evaluate(self) -> dict:
        p = self.world.pass_rate(self.world.eval_ids)
        return {"eval_acc": float(p.mean()), **solved_shares(p)}


def make_env(scenario: str | Scenario = "default", seed: int = 0, **overrides) -> Environment:
    """A fresh simulated environment; ``scenario`` a name, a scenario TOML file or a
    ``Scenario``; ``overrides`` replace scenario fields."""
    sc = get_scenario(scenario, **overrides)
    world = SimWorld(sc, seed)
    pool = np.arange(sc.pool_size)
    return Environment(
        name="sim", scenario=sc.name, sampler=SimSampler(world), learner=SimLearner(world),
        evaluator=SimEvaluator(world), prompt_ids=pool,
        epoch_order=lambda rng: rng.permutation(pool),
        train_batch=sc.train_batch, group_size=sc.group_size,
        info={"steps": sc.steps, "world": world}, save=world.save, load=world.load,
        describe=lambda ids: {"pass_rate": world.pass_rate(ids)}, features=world.features)
