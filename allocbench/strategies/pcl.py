from dataclasses import dataclass

import numpy as np

from allocbench.protocols import Outcome, group_means
from allocbench.strategy import StepContext, Strategy, hyper, register


@register("pcl")
@dataclass
class PCL(Strategy):
    """PCL, Prompt Curriculum Learning ("Prompt Curriculum Learning for Efficient LLM
    Post-Training", Gao et al., arXiv 2510.01135, ICLR 2026).

    Rule (the paper's PCL algorithm): a value model V(x) predicts the current policy's success
    rate p(x) of a prompt in one forward pass, without rollouts. Each step draws k x m candidate
    prompts (m = B), scores them with V and keeps the m whose V(x) is nearest the threshold tau
    (prompts near p = 0.5 carry the largest gradient and effective ratio); those m get n
    rollouts each in one generation round and every group is trained on. The value model is
    then updated on the same m prompts, on-policy, by the squared error to each group's mean
    reward, sum_i (V(x_i) - mean_j r(x_i, y_ij))^2. No screening rollouts.

    Here V(x) = sigmoid(MLP(x)), x the environment's prompt features (``ctx.sampler.features``,
    counted by the ledger: in the real environment the policy's pooled last hidden state of the
    prompt, in the simulator a noisy view of the prompt's skill loadings and offset), with one
    tanh hidden layer of ``hidden`` units (0: logistic regression), features standardised by a
    running mean and variance over every candidate pool scored, trained by ``value_steps`` Adam
    steps per training step on the paper's loss (mean rather than sum over the m groups).

    Paper symbols: k = pool_factor; m = the run's B; n = the run's n; tau = target; the value
    model's optimiser (its learning rate) = lr, value_steps.

    Simplified: the paper's value model is a language model with a scalar head reading the
    prompt's tokens, trained with the policy; here a small numpy MLP head on features the
    environment computes (in the real environment the policy's own hidden states, so the
    backbone is the policy's and only the head learns). The defaults (k = 4, the head's size and
    optimiser) are ours, not the paper's; the value model starts untrained, so step 1 keeps the
    first m candidates (data-loader order, as GRPO). Candidates not kept are consumed from the
    data loader like rejected DAPO prompts.
    """

    pool_factor: int = hyper(
        4, "candidates scored by the value model per step, as a multiple of the train batch (k)",
        low=1, search=(1, 16), log=True)
    target: float = hyper(
        0.5, "predicted success rate the selection aims at (tau)", low=0.0, high=1.0, search=(0.3, 0.7))
    hidden: int = hyper(
        32, "hidden units of the value model's tanh layer; 0 = logistic regression on the features",
        low=0, search=(0, 64))
    lr: float = hyper(0.02, "Adam learning rate of the value model", low=0.0, open_low=True,
                      search=(1e-3, 1e-1), log=True)
    value_steps: int = hyper(
        4, "Adam steps of the value model per training step, on that step's groups",
        low=1, search=(1, 16), log=True)

    def collect(self, ctx: StepContext) -> list[Outcome]:
        pool = ctx.candidates.take(self.pool_factor * ctx.train_batch)
        features = ctx.sampler.features(pool, by="pcl")
        if "value" not in ctx.memory:
            ctx.memory["value"] = ValueModel(features.shape[1], self.hidden, ctx.rng)
        value: ValueModel = ctx.memory["value"]
        value.scale.update(features)

        predicted = value.predict(features)
        chosen = np.argsort(np.abs(predicted - self.target), kind="stable")[: ctx.train_batch]
        outcomes = ctx.sampler.sample({int(i): ctx.group_size for i in pool[chosen]})
        groups = [outcomes[int(i)] for i in pool[chosen]]

        _, means = group_means(groups)
        value.fit(features[chosen], means, self.value_steps, self.lr)
        return groups


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))  # clipped: no overflow, p within 1e-17 of 0 / 1


class RunningScale:
    """Standardises features by the running mean and variance of every batch it has seen
    (Chan et al.'s parallel update), so a predictor's inputs are on a fixed scale whatever the
    environment's features are."""

    def __init__(self, dim: int):
        self.count, self.mean, self.m2 = 0, np.zeros(dim), np.zeros(dim)

    def update(self, x: np.ndarray) -> None:
        k = len(x)
        if k == 0:
            return
        mean = x.mean(axis=0)
        delta, total = mean - self.mean, self.count + k
        self.m2 += ((x - mean) ** 2).sum(axis=0) + delta**2 * self.count * k / total
        self.mean += delta * k / total
        self.count = total

    def __call__(self, x: np.ndarray) -> np.ndarray:
        std = np.sqrt(self.m2 / max(self.count, 1))
        return (x - self.mean) / np.where(std > 1e-12, std, 1.0)


class ValueModel:
    """V(x) = sigmoid(w2 . tanh(W1 s(x) + b1) + b2) (or sigmoid(w . s(x) + b) with no hidden
    layer), s the running standardisation; trained by Adam on the mean squared error to
    observed success rates. The output layer starts at zero: V = 0.5 everywhere."""

    BETAS, EPS = (0.9, 0.999), 1e-8

    def __init__(self, dim: int, hidden: int, rng: np.random.Generator):
        self.scale = RunningScale(dim)
        self.params: dict[str, np.ndarray] = {"w2": np.zeros(hidden or dim), "b2": np.zeros(1)}
        if hidden:
            self.params["W1"] = rng.standard_normal((dim, hidden)) / np.sqrt(dim)
            self.params["b1"] = np.zeros(hidden)
        self.moments = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in self.params.items()}
        self.updates = 0

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        h = np.tanh(x @ p["W1"] + p["b1"]) if "W1" in p else x
        return h, sigmoid(h @ p["w2"] + p["b2"][0])

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predicted success rate of each row of ``features``."""
        return self._forward(self.scale(features))[1]

    def fit(self, features: np.ndarray, rates: np.ndarray, steps: int, lr: float) -> None:
        """``steps`` Adam steps on mean_i (V(x_i) - rates_i)^2."""
        x = self.scale(features)
        for _ in range(steps):
            h, v = self._forward(x)
            dz = 2.0 * (v - rates) * v * (1.0 - v) / len(x)  # d loss / d pre-sigmoid output
            grads = {"w2": h.T @ dz, "b2": np.array([dz.sum()])}
            if "W1" in self.params:
                dh = np.outer(dz, self.params["w2"]) * (1.0 - h**2)
                grads["W1"], grads["b1"] = x.T @ dh, dh.sum(axis=0)
            self._adam(grads, lr)

    def _adam(self, grads: dict[str, np.ndarray], lr: float) -> None:
        self.updates += 1
        (b1, b2), t = self.BETAS, self.updates
        for key, g in grads.items():
            m, v = self.moments[key]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g**2
            self.params[key] -= lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + self.EPS)
