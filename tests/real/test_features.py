import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("math_verify")

from allocbench import Ledger  # noqa: E402
from real import make_env  # noqa: E402


def test_pooled_hidden_states_of_the_current_policy_batched_and_counted(small_overrides):
    # on CPU in float32 wherever the suite runs, so rows compare within float tolerance
    env = make_env("tiny-arith", seed=0, **{**small_overrides, "model.device": "cpu"})
    world = env.info["world"]
    ids = np.array([5, 0, 17, 3, 5, 40, 9, 63])
    ledger = Ledger(env.sampler, features=env.features)
    batched = ledger.features(ids)
    assert batched.shape == (8, world.policy.model.config.hidden_size) and batched.dtype == np.float32
    lengths = [len(world.prompt_ids(int(i))) for i in ids]
    assert len(set(lengths)) > 1  # prompts of several lengths share a padded batch
    assert (ledger.total.feature_prompts, ledger.total.feature_tokens) == (8, sum(lengths))
    # one prompt per forward pass, and batches of at most 20 padded tokens: the same rows
    alone = np.concatenate([env.features(np.array([i])) for i in ids])
    assert np.allclose(batched, alone, atol=1e-5) and np.array_equal(batched[0], batched[4])
    small = world.policy.prompt_features([world.prompt_ids(int(i)) for i in ids], batch_tokens=20)
    assert np.allclose(batched, small, atol=1e-5)
    assert np.abs(batched[0] - batched[1]).max() > 1e-3  # different prompts, different features
    # the mean over the prompt's tokens of the model's last hidden state
    with torch.no_grad():
        out = world.policy.model(input_ids=torch.tensor([world.prompt_ids(17)]), output_hidden_states=True)
    assert np.allclose(batched[2], out.hidden_states[-1][0].mean(0).numpy(), atol=1e-5)
    # the current weights: a changed model gives other features
    with torch.no_grad():
        for p in world.policy.model.parameters():
            p.mul_(1.05)
    assert np.abs(env.features(ids[:1]) - batched[:1]).max() > 1e-3
    # their seconds reach the learner's report
    report = env.learner.update([])
    assert report["time_features_s"] > 0
