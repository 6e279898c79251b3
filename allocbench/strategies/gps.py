from dataclasses import dataclass

import numpy as np

from allocbench.protocols import Outcome
from allocbench.strategies.pcl import RunningScale, sigmoid
from allocbench.strategy import StepContext, Strategy, hyper, register

NEWTON_STEPS = 6  # Newton iterations of each Laplace update (the log-posterior is concave)
SHORTLIST = 4  # the batch acquisition's greedy considers at most this many candidates per pick (x B)


@register("gps")
@dataclass
class GPS(Strategy):
    """GPS, Generalizable Predictive Prompt Selection ("Small Generalizable Prompt Predictive
    Models Can Steer Efficient RL Post-Training of Large Reasoning Models", Qu et al., arXiv
    2602.01970).

    Rule: one small predictive model, shared across prompts, infers every prompt's difficulty
    (its success rate gamma under the current policy) by Bayesian inference on the whole
    optimisation history, instead of a posterior per prompt (MoPPS), so prompts never rolled
    out get a prediction too. Each step it scores pool_factor x B candidates and picks a batch
    of B by an acquisition that adds intermediate-difficulty priority and history-anchored
    diversity; the B get n rollouts each in one generation round, every group is trained on,
    and the groups update the posterior. No screening rollouts.

    Here the predictive model is a Bayesian logistic regression on the environment's prompt
    features (``ctx.sampler.features``, counted by the ledger; standardised by a running mean
    and variance, randomly projected to ``max_dim`` dimensions when wider): gamma = sigmoid(theta
    . x), successes ~ Binomial(n, gamma). The posterior over theta is Gaussian (Laplace: Newton
    steps to the mode, the Hessian as precision). Before each update the previous posterior
    becomes the prior with its precision discounted, Lambda <- lambda Lambda + (1 - lambda) I /
    prior_var, so old evidence fades as the policy moves. The prediction gamma_hat is the mean of
    sigmoid(theta_s . x) over ``samples`` posterior draws theta_s (Monte Carlo). Acquisition,
    greedy over the batch: a(x) = -|gamma_hat(x) - gamma*| + diversity x min(1, d(x) / sqrt(2
    dim)), d(x) the distance from x to the nearest of the anchors (the prompts trained in the
    last ``anchor_steps`` steps) and the prompts already picked, sqrt(2 dim) the typical distance
    of two standardised prompts. The greedy considers the 4 x B candidates of highest priority
    (all of them at the default pool_factor; ``acquire``), so it stays cheap at 10^5 candidates.

    Paper symbols: gamma_tau = a prompt's success rate; gamma* = target; the history-dependent
    prior p(theta | H_{t-1}) = the discounted previous posterior (lambda = discount); the number
    of Monte Carlo samples = samples; the diversity weight = diversity; B-hat / B = pool_factor.

    Simplified: the paper's predictive model is a lightweight latent-variable generative model
    (a history-conditioned prior over a latent, a decoder to the success rate) trained by an
    ELBO on prompt representations; here its latent is the regression weights and its inference
    the conjugate-style Laplace update above. The exact form of the paper's diversity term was
    not available to us: the nearest-anchor distance above is our reading of "history-anchored
    diversity". The defaults are ours; candidates not picked are consumed from the data loader
    like rejected DAPO prompts.
    """

    pool_factor: int = hyper(
        4, "candidates scored per step, as a multiple of the train batch (B-hat / B)",
        low=1, search=(1, 16), log=True)
    target: float = hyper(
        0.5, "predicted success rate of highest priority (gamma*)", low=0.0, high=1.0, search=(0.3, 0.7))
    diversity: float = hyper(
        0.1, "weight of the history-anchored diversity term against the difficulty priority",
        low=0.0, search=(0.0, 1.0))
    anchor_steps: int = hyper(
        1, "past steps whose trained prompts anchor the diversity term (0: only this step's picks)",
        low=0, search=(0, 8))
    discount: float = hyper(
        0.9, "share of the posterior precision kept at each step; the rest returns to the prior (lambda)",
        low=0.0, high=1.0, search=(0.5, 1.0))
    prior_var: float = hyper(
        1.0, "prior variance of each regression weight (features standardised)",
        low=0.0, open_low=True, search=(0.1, 10.0), log=True)
    samples: int = hyper(
        16, "posterior draws averaged in the predicted success rate (1 = Thompson sampling)",
        low=1, search=(1, 64), log=True)
    max_dim: int = hyper(
        64, "features wider than this are projected (fixed random projection) to this many dimensions",
        low=1)

    def collect(self, ctx: StepContext) -> list[Outcome]:
        pool = ctx.candidates.take(self.pool_factor * ctx.train_batch)
        raw = ctx.sampler.features(pool, by="gps")
        if "model" not in ctx.memory:
            ctx.memory["model"] = BayesLogistic(raw.shape[1], self.max_dim, self.prior_var, ctx.rng)
        model: BayesLogistic = ctx.memory["model"]
        anchors: list[np.ndarray] = ctx.memory.setdefault("anchors", [])
        model.observe(raw)

        x = model.inputs(raw)
        predicted = model.predict(x, self.samples, ctx.rng)
        history = model.inputs(np.concatenate(anchors)) if anchors else x[:0]
        chosen = self.acquire(x, predicted, history, ctx.train_batch)
        outcomes = ctx.sampler.sample({int(i): ctx.group_size for i in pool[chosen]})
        groups = [outcomes[int(i)] for i in pool[chosen]]

        successes = np.array([g.rewards.sum() for g in groups])
        trials = np.array([g.n for g in groups], dtype=float)
        model.update(x[chosen], successes, trials, self.discount, self.prior_var)
        if self.anchor_steps:
            anchors.append(raw[chosen])
            del anchors[: -self.anchor_steps]
        return groups

    def acquire(self, x: np.ndarray, predicted: np.ndarray, history: np.ndarray, k: int) -> np.ndarray:
        """Greedy batch of ``k`` rows of ``x``: each pick maximises the priority
        -|predicted - target| plus diversity x min(1, distance to the nearest anchor or earlier
        pick / sqrt(2 dim)). Returns the picked rows in pick order.

        Only candidates whose priority is within ``diversity`` of the k-th best can be picked
        (a pick scores at least the k-th best priority, a candidate at most its priority plus
        ``diversity``), and of those the greedy considers the SHORTLIST x k of highest priority:
        exact whenever the pool holds at most that many (the default pool_factor 4)."""
        priority = -np.abs(predicted - self.target)
        order = np.argsort(-priority, kind="stable")
        if self.diversity == 0:
            return order[:k]
        short = order[: SHORTLIST * k]
        short = short[priority[short] >= priority[order[k - 1]] - self.diversity]
        xs, ps = x[short], priority[short]
        scale = np.sqrt(2.0 * x.shape[1])
        nearest = np.full(len(short), scale)
        for start in range(0, len(history), 256):  # in chunks: candidates x anchors distances
            nearest = np.minimum(nearest, _distances(xs, history[start: start + 256]).min(axis=1))
        picked = np.zeros(len(short), dtype=bool)
        chosen = []
        for _ in range(k):
            score = ps + self.diversity * np.minimum(nearest / scale, 1.0)
            score[picked] = -np.inf
            best = int(np.argmax(score))
            chosen.append(best)
            picked[best] = True
            nearest = np.minimum(nearest, np.sqrt(((xs - xs[best]) ** 2).sum(axis=1)))
        return short[np.array(chosen, dtype=np.int64)]


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` and of ``b``."""
    sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


class BayesLogistic:
    """Bayesian logistic regression of success rates on (standardised, projected) features
    plus a bias, with a Gaussian posterior N(mean, precision^-1) kept by Laplace updates."""

    def __init__(self, dim: int, max_dim: int, prior_var: float, rng: np.random.Generator):
        # a fixed random projection when the features are wider than max_dim (E|Px|^2 = |x|^2)
        self.projection = rng.standard_normal((dim, max_dim)) / np.sqrt(max_dim) if dim > max_dim else None
        self.scale = RunningScale(min(dim, max_dim))
        d = min(dim, max_dim) + 1
        self.mean = np.zeros(d)
        self.precision = np.eye(d) / prior_var

    def _project(self, raw: np.ndarray) -> np.ndarray:
        return raw if self.projection is None else raw @ self.projection

    def observe(self, raw: np.ndarray) -> None:
        """Fold a candidate pool into the running standardisation."""
        self.scale.update(self._project(raw))

    def inputs(self, raw: np.ndarray) -> np.ndarray:
        """The regression's inputs: projected, standardised features."""
        return self.scale(self._project(raw))

    def _design(self, x: np.ndarray) -> np.ndarray:
        return np.column_stack([x, np.ones(len(x))])

    @property
    def covariance(self) -> np.ndarray:
        return np.linalg.inv(self.precision)

    def predict(self, x: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
        """Monte Carlo predictive success rate: the mean over ``samples`` posterior draws of
        sigmoid(theta . [x, 1])."""
        chol = np.linalg.cholesky(self.precision)  # precision = L L^T; theta = mean + L^-T z
        z = rng.standard_normal((len(self.mean), samples))
        theta = self.mean[:, None] + np.linalg.solve(chol.T, z)
        return sigmoid(self._design(x) @ theta).mean(axis=1)

    def update(self, x: np.ndarray, successes: np.ndarray, trials: np.ndarray, discount: float,
               prior_var: float) -> None:
        """The discounted posterior as prior, then the Laplace posterior given ``successes``
        out of ``trials`` at ``x``: Newton steps to the mode, the Hessian there as precision."""
        d = len(self.mean)
        prior_mean = self.mean
        prior_precision = discount * self.precision + (1.0 - discount) * np.eye(d) / prior_var
        a, theta = self._design(x), self.mean.copy()
        for _ in range(NEWTON_STEPS):
            p = sigmoid(a @ theta)
            gradient = a.T @ (successes - trials * p) - prior_precision @ (theta - prior_mean)
            hessian = prior_precision + (a * (trials * p * (1.0 - p))[:, None]).T @ a
            theta = theta + np.linalg.solve(hessian, gradient)
        p = sigmoid(a @ theta)
        self.mean = theta
        self.precision = prior_precision + (a * (trials * p * (1.0 - p))[:, None]).T @ a
