from dataclasses import dataclass

import numpy as np

from allocbench.errors import ConfigError
from allocbench.protocols import Outcome
from allocbench.strategy import StepContext, Strategy, hyper, register

FEATURES = 8  # the length of a rollout's context vector (``contexts``)
TRAIN_ARMS = 64  # selected rollouts kept per step as the scheduler's training contexts
FIT_STEPS = 10  # gradient steps of the scheduler per observed gain
RIDGE = 1.0  # lambda of the exploration bonus's design matrix A = lambda I + sum of phi phi^T


@register("rollout_bandit")
@dataclass
class RolloutBandit(Strategy):
    """CBS, contextual rollout bandits (Lu et al., "Contextual Rollout Bandits for
    Reinforcement Learning with Verifiable Rewards", arXiv 2602.08499).

    Rule: rollout scheduling is a contextual bandit whose arms are rollouts. Every step draws
    grpo's B prompts x n rollouts (one sampler call); the candidate set C_t is those fresh
    rollouts plus the historical ones in a buffer; a neural scheduler scores every candidate
    from its context and the step trains on the K best (the paper's subset C-bar_t of size K).
    Dropping low-scored fresh rollouts of a group is the paper's noise-aware intra-group
    selection; buffered rollouts that outscore fresh ones are its adaptive global reuse, both
    from one ranking. The selected rollouts go back into groups by prompt (fresh first, reused
    last with ``reused`` set and their original rollout ids: they cost no rollout). The
    learner here recomputes each group's advantage from the rollouts it is given, so a group
    whose picks are all correct (or all wrong) while its prompt has both kinds also gets its
    best-scored rollout of the other kind (at most one rollout per group beyond K; without it
    one of three `default` seeds locked into training on correct answers only, learning
    nothing); a group left with a single rollout is dropped (no advantage).

    Arm reward: the paper's R = V_{t+1} - V_t - w_e 1[E_t > e_min] (E_{t+1} - E_t), the
    performance gain between the rollout batches before and after the update on C-bar_t. Here
    V_t is the mean reward of step t's fresh rollouts (on-policy, drawn before update t, so
    V_{t+1} - V_t is what update t changed, measured on fresh loader prompts), not the trained
    subset's (biased by the selection) nor ``ctx.last_update`` (its shared keys measure gradient
    noise, not performance). Every trained rollout of step t gets that one gain, observed at
    step t + 1.

    Context of a rollout (what a strategy sees): its reward, its group's mean and std and its
    advantage in that group (as generated), its length against the fresh batch's mean and its
    group's mean (log ratios), its age in steps over ``max_staleness``, and the learner's
    previous ``zero_adv_share``.

    Scheduler (the paper's neural bandit, in its simplest form): a one-hidden-layer tanh network
    f(x) fitted online (``FIT_STEPS`` gradient steps per observed gain, each step's gain
    standardised over the window of the last ``gain_window`` gains, each step weighted once), and a
    UCB exploration term on its last layer (Neural-LinUCB): score = f(x) + explore x
    sqrt(phi^T A^-1 phi), phi = (hidden activations, 1), A = lambda I + the sum over the window
    of each step's mean phi phi^T, so uncertainty shrinks with observed steps, not rollouts.
    The network starts with a zero output layer: early selection is pure exploration.

    Paper symbols: K = ``select_fraction`` x B x n; the buffer's capacity = ``buffer_size``
    (rollouts); the exploration weight = ``explore``; the scheduler's width and learning rate =
    ``hidden`` and ``lr``. Ours: ``max_staleness`` (the real tier's rollout store keeps
    rollouts 16 steps) and ``gain_window`` (a bounded training window).

    Simplified: w_e = 0 (neither sim nor real reports the policy's entropy E_t); the gain is
    one scalar per step shared by every selected rollout and is noisy (consecutive batches hold
    different prompts); the scheduler is a small numpy network on eight hand-made features (the
    paper's scheduler and features are richer); a reused rollout's advantage is recomputed in
    the group it is trained in (the learner sees no stored advantage), and its staleness is not
    corrected for (in the simulator a replay costs what the scenario's ``stale_pull`` and
    ``replay_window`` charge, nothing by default). The buffer holds every fresh rollout
    of the last ``max_staleness`` steps, the oldest leaving first once it holds ``buffer_size``.
    """

    contour = ("select_fraction", "explore")  # the tuning contour's pair

    select_fraction: float = hyper(
        1.0, "rollouts trained per step (K), as a share of the B x n drawn", low=0.0, open_low=True,
        high=4.0, search=(0.5, 2.0))
    max_staleness: int = hyper(
        2, "oldest reusable rollout, in steps (0: no reuse, intra-group selection only)",
        low=0, high=16, search=(0, 8))
    buffer_size: int | None = hyper(
        None, "capacity of the rollout buffer in rollouts; default 2 x B x n", low=1)
    explore: float = hyper(0.5, "weight of the UCB exploration bonus", low=0.0,
                           search=(0.01, 5.0), log=True)
    hidden: int = hyper(16, "hidden units of the scheduler network", low=1, high=256,
                        search=(4, 64), log=True)
    lr: float = hyper(0.1, "learning rate of the scheduler network", low=0.0, open_low=True,
                      high=10.0, search=(0.01, 1.0), log=True)
    gain_window: int = hyper(32, "observed gains (steps) the scheduler trains on", low=1,
                         search=(4, 128), log=True)

    def derive(self, train_batch: int, group_size: int) -> dict:
        if group_size < 2:
            raise ConfigError("rollout_bandit needs n >= 2: it trains on groups of two or more rollouts")
        return {"buffer_size": self.buffer_size or 2 * train_batch * group_size}

    def collect(self, ctx: StepContext) -> list[Outcome]:
        mem = ctx.memory
        if "net" not in mem:
            mem["net"] = init_net(ctx.rng, self.hidden)
        for key, start in (("replay_x", []), ("replay_y", []), ("buffer", empty_buffer())):
            mem.setdefault(key, start)

        # fresh rollouts: grpo's B prompts x n, one round
        prompts = ctx.candidates.take(ctx.train_batch)
        outcomes = ctx.sampler.sample({int(i): ctx.group_size for i in prompts})
        fresh = rollout_table([outcomes[int(i)] for i in prompts], ctx.step)

        # the arm reward of last step's selection: the gain V_t - V_{t-1} of fresh batches
        value = float(fresh["reward"].mean())
        if "pending" in mem:
            mem["replay_x"].append(mem.pop("pending"))
            mem["replay_y"].append(value - mem["value"])
            del mem["replay_x"][:-self.gain_window], mem["replay_y"][:-self.gain_window]
            fit(mem["net"], mem["replay_x"], mem["replay_y"], self.lr, FIT_STEPS)
        mem["value"] = value

        # candidates C_t: fresh rollouts, then buffered ones still young enough
        buffer = take(mem["buffer"], ctx.step - mem["buffer"]["step"] <= self.max_staleness)
        arms = concat(fresh, buffer)
        x = contexts(arms, ctx.step, float(fresh["tokens"].mean()), self.max_staleness,
                     ctx.last_update.get("zero_adv_share"))
        score = scores(mem["net"], x, mem["replay_x"], self.explore)

        # C-bar_t: the K best, back in groups by prompt
        k = max(1, round(self.select_fraction * ctx.train_batch * ctx.group_size))
        chosen = np.arange(len(score)) if k >= len(score) else np.argpartition(-score, k - 1)[:k]
        groups, trained = to_groups(arms, with_contrast(arms, chosen, score), ctx.step)

        # remember: this step's training contexts (their gain comes next step) and the buffer
        if len(trained):
            mem["pending"] = x[ctx.rng.choice(trained, size=min(TRAIN_ARMS, len(trained)), replace=False)]
        mem["buffer"] = take(concat(buffer, fresh), slice(-self.buffer_size, None))
        return groups


# --- the rollout table: one array per column, one entry per rollout ----------------------------

COLUMNS = ("prompt", "reward", "tokens", "id", "step", "group_mean", "group_std", "group_tokens")


def empty_buffer() -> dict:
    return {c: np.empty(0, dtype=np.int64 if c in ("prompt", "id", "step") else float) for c in COLUMNS}


def rollout_table(groups: list[Outcome], step: int) -> dict:
    """The rollouts of ``groups`` with their group's statistics, as generated (vectorised)."""
    sizes = np.fromiter((g.n for g in groups), dtype=np.int64, count=len(groups))
    starts = np.cumsum(sizes) - sizes
    reward = np.concatenate([g.rewards for g in groups]).astype(float)
    tokens = np.concatenate([g.tokens for g in groups]).astype(float)
    mean = np.add.reduceat(reward, starts) / sizes
    std = np.sqrt(np.maximum(np.add.reduceat(reward**2, starts) / sizes - mean**2, 0.0))
    return {"prompt": np.repeat([g.prompt_id for g in groups], sizes).astype(np.int64),
            "reward": reward, "tokens": tokens,
            "id": np.concatenate([g.rollout_ids for g in groups]).astype(np.int64),
            "step": np.full(len(reward), step, dtype=np.int64),
            "group_mean": np.repeat(mean, sizes), "group_std": np.repeat(std, sizes),
            "group_tokens": np.repeat(np.add.reduceat(tokens, starts) / sizes, sizes)}


def take(table: dict, index) -> dict:
    return {c: v[index] for c, v in table.items()}


def concat(a: dict, b: dict) -> dict:
    return {c: np.concatenate([a[c], b[c]]) for c in COLUMNS}


def contexts(arms: dict, step: int, batch_tokens: float, max_staleness: int, zero_adv_share) -> np.ndarray:
    """Each rollout's context x (``FEATURES`` columns, each within [-1, 1] or [0, 1])."""
    std = arms["group_std"]
    advantage = np.where(std > 0, (arms["reward"] - arms["group_mean"]) / np.where(std > 0, std, 1.0), 0.0)
    share = 0.0 if zero_adv_share is None or not np.isfinite(zero_adv_share) else float(zero_adv_share)
    return np.column_stack([
        arms["reward"],
        arms["group_mean"],
        2.0 * std,
        np.clip(advantage, -3.0, 3.0) / 3.0,
        np.clip(np.log(np.maximum(arms["tokens"], 1.0) / max(batch_tokens, 1.0)), -2.0, 2.0) / 2.0,
        np.clip(np.log(np.maximum(arms["tokens"], 1.0) / np.maximum(arms["group_tokens"], 1.0)), -2.0, 2.0) / 2.0,
        (step - arms["step"]) / max(max_staleness, 1),
        np.full(len(std), share),
    ])


def with_contrast(arms: dict, chosen: np.ndarray, score: np.ndarray) -> np.ndarray:
    """``chosen`` plus, for each prompt it holds rollouts of, the best-scored candidate of a
    reward (correct / wrong) it lacks when the prompt has one: the learner recomputes a group's
    advantage from the rollouts it is given, so a group needs both kinds to keep the advantage
    its rollouts had in the full group."""
    correct = arms["reward"] > 0.5
    order = np.lexsort((-score, correct, arms["prompt"]))
    prompt, kind = arms["prompt"][order], correct[order]
    best = order[np.r_[True, (prompt[1:] != prompt[:-1]) | (kind[1:] != kind[:-1])]]  # per (prompt, kind)
    key = 2 * arms["prompt"] + correct
    missing = np.isin(arms["prompt"][best], arms["prompt"][chosen]) & ~np.isin(key[best], key[chosen])
    return np.concatenate([chosen, best[missing]])


def to_groups(arms: dict, chosen: np.ndarray, step: int) -> tuple[list[Outcome], np.ndarray]:
    """The chosen rollouts as one group per prompt (this step's first, then reused ones from
    earlier steps); groups of one rollout are dropped. Returns the groups and the arm indices
    they hold."""
    reused = arms["step"][chosen] < step
    chosen = chosen[np.lexsort((chosen, reused, arms["prompt"][chosen]))]
    _, starts, sizes = np.unique(arms["prompt"][chosen], return_index=True, return_counts=True)
    kept = sizes >= 2
    groups = []
    for a, n in zip(starts[kept].tolist(), sizes[kept].tolist()):
        idx = chosen[a:a + n]
        groups.append(Outcome(int(arms["prompt"][idx[0]]), arms["reward"][idx], arms["tokens"][idx].astype(np.int64),
                              int((arms["step"][idx] < step).sum()), arms["id"][idx]))
    return groups, chosen[np.repeat(kept, sizes)]


# --- the scheduler: a one-hidden-layer network with a last-layer UCB bonus ---------------------

def init_net(rng: np.random.Generator, hidden: int) -> dict:
    """Random first layer, zero output layer (f = 0 until a gain is observed)."""
    return {"w1": rng.normal(0.0, 1.0 / np.sqrt(FEATURES), size=(FEATURES, hidden)),
            "b1": rng.normal(0.0, 0.1, size=hidden), "w2": np.zeros(hidden), "b2": np.zeros(1)}


def features_of(net: dict, x: np.ndarray) -> np.ndarray:
    """phi(x): the hidden activations and a constant, the gradient of f in its last layer."""
    h = np.tanh(x @ net["w1"] + net["b1"])
    return np.column_stack([h, np.ones(len(x))])


def predict(net: dict, x: np.ndarray) -> np.ndarray:
    return features_of(net, x) @ np.append(net["w2"], net["b2"])


def scores(net: dict, x: np.ndarray, replay_x: list[np.ndarray], explore: float) -> np.ndarray:
    """UCB score f(x) + explore sqrt(phi^T A^-1 phi); A counts each observed step once."""
    phi = features_of(net, x)
    a = RIDGE * np.eye(phi.shape[1])
    for seen in replay_x:
        p = features_of(net, seen)
        a += p.T @ p / len(p)
    bonus = np.sqrt(np.maximum(np.einsum("ij,ij->i", phi @ np.linalg.inv(a), phi), 0.0))
    return phi @ np.append(net["w2"], net["b2"]) + explore * bonus


def fit(net: dict, replay_x: list[np.ndarray], replay_y: list[float], lr: float, steps: int) -> None:
    """Gradient descent on the squared error between f(x) and each step's standardised gain,
    every step weighted once (its rollouts share its gain). In place."""
    y = np.asarray(replay_y, dtype=float)
    if len(y) < 2 or y.std() == 0:
        return  # one gain ranks nothing
    z = (y - y.mean()) / y.std()
    x = np.concatenate(replay_x)
    target = np.repeat(z, [len(r) for r in replay_x])
    weight = np.repeat([1.0 / (len(r) * len(replay_x)) for r in replay_x], [len(r) for r in replay_x])
    for _ in range(steps):
        h = np.tanh(x @ net["w1"] + net["b1"])
        err = weight * (h @ net["w2"] + net["b2"][0] - target)
        back = err[:, None] * net["w2"] * (1.0 - h**2)
        net["w2"] -= lr * 2.0 * (err @ h)
        net["b2"] -= lr * 2.0 * err.sum()
        net["w1"] -= lr * 2.0 * (x.T @ back)
        net["b1"] -= lr * 2.0 * back.sum(axis=0)
