"""The RL math of ppo_attention.py against references written another way: GAE as a forward sum, the PPO
loss term by term from hand-computed numbers, the minibatches, and one real training run whose every step
is recorded, for the reward clipping, the logged scores, the forced FIRE steps, the done flags, the stored
log-probs and values, and the learning-rate schedule. tests/mutate_rl_math.py checks that each catches its change.

Each test is meant to fail when one term of its formula changes (λ, γ, the done mask, the bootstrap, the
clip's min/max or bounds, value clipping, a coefficient or its sign, advantage normalisation)."""

import math
import os
import statistics

import numpy as np
import pytest
import torch
from conftest import ppo_loss_on_rows, tiny_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import ppo_attention
from ppo_attention import Args, compute_gae, train

# ----------------------------------------------------------------------------- GAE


def gae_forward_sum(rewards, values, episode_ends, bootstrap, gamma, lam):
    """A_t = sum_l (gamma lam)^l delta_{t+l}, summed forwards until the episode ends: one env, plain floats.

    episode_ends[t]: step t ended its episode (a lost life or a game over), so V(s_{t+1}) is not used and the
    sum stops. bootstrap: V of the observation after the last step, used unless that step ended an episode."""
    T = len(rewards)
    next_values = [values[t + 1] if t + 1 < T else bootstrap for t in range(T)]
    deltas = [rewards[t] + gamma * next_values[t] * (0.0 if episode_ends[t] else 1.0) - values[t] for t in range(T)]
    advantages = []
    for t in range(T):
        total, weight = 0.0, 1.0
        for k in range(t, T):
            total += weight * deltas[k]
            if episode_ends[k]:
                break
            weight *= gamma * lam
        advantages.append(total)
    return advantages


def test_gae_by_hand_on_four_steps():
    """One env, gamma 0.5, lambda 0.5 (gamma lambda = 0.25); step 2 ends a life; V(s_4) = 10 bootstraps step 3.
    delta_3 = 0 + 0.5 * 10 - 2 = 3                  A_3 = 3
    delta_2 = 1 - 0.5 = 0.5 (terminal: no V(s_3))   A_2 = 0.5 (the sum stops at the lost life)
    delta_1 = 0 + 0.5 * 0.5 - 2 = -1.75             A_1 = -1.75 + 0.25 * 0.5 = -1.625
    delta_0 = 1 + 0.5 * 2 - 4 = -2                  A_0 = -2 + 0.25 * -1.625 = -2.40625"""
    rewards = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    values = torch.tensor([[4.0], [2.0], [0.5], [2.0]])
    dones = torch.tensor([[0.0], [0.0], [0.0], [1.0]])  # obs 3 starts a new episode: step 2 ended one
    advantages, returns = compute_gae(
        rewards, values, dones, torch.tensor([10.0]), torch.tensor([0.0]), Args(gamma=0.5, gae_lambda=0.5, num_steps=4)
    )
    assert advantages[:, 0].tolist() == pytest.approx([-2.40625, -1.625, 0.5, 3.0])
    assert returns[:, 0].tolist() == pytest.approx([1.59375, 0.375, 1.0, 5.0])  # returns = advantages + values


def test_gae_equals_the_forward_sum_with_a_lost_life_a_game_over_and_the_bootstrap():
    T, N, gamma, lam = 12, 3, 0.9, 0.8
    g = torch.Generator().manual_seed(0)
    rewards = torch.randint(-1, 2, (T, N), generator=g).float()
    values = torch.randn(T, N, generator=g)
    next_value = torch.randn(N, generator=g)
    ends = torch.zeros(T, N, dtype=torch.bool)
    ends[3, 0] = True  # env 0: a lost life in mid-rollout
    ends[7, 1] = ends[8, 1] = True  # env 1: a game over, then the new game's first step ends a life too
    ends[T - 1, 2] = True  # env 2: the last step ends the episode, so the bootstrap value is not used
    dones = torch.zeros(T, N)
    dones[1:] = ends[:-1].float()  # CleanRL's convention: dones[t] marks obs t as the start of an episode
    next_done = ends[T - 1].float()
    advantages, returns = compute_gae(
        rewards, values, dones, next_value, next_done, Args(gamma=gamma, gae_lambda=lam, num_steps=T)
    )
    for n in range(N):
        expected = gae_forward_sum(rewards[:, n].tolist(), values[:, n].tolist(), ends[:, n].tolist(),
                                   float(next_value[n]), gamma, lam)  # fmt: skip
        assert advantages[:, n].tolist() == pytest.approx(expected, abs=1e-5), n
    assert torch.allclose(returns, advantages + values)
    assert advantages[T - 1, 2] == pytest.approx(float(rewards[T - 1, 2] - values[T - 1, 2]), abs=1e-6)
    assert advantages[T - 1, 0] == pytest.approx(float(rewards[T - 1, 0] + gamma * next_value[0] - values[T - 1, 0]))


# ----------------------------------------------------------------------------- the PPO loss


def loss_case():
    """Four samples, clip 0.2: a ratio of 0.5 with A < 0 (clipped below), 1.5 with A > 0 (clipped above),
    1.5 with A < 0 (the unclipped term is the pessimistic one) and 1.05 (inside the clip range)."""
    ratios = [0.5, 1.5, 1.5, 1.05]
    raw_advantages = [-2.0, 3.0, -1.0, 0.5]
    old_logprobs = [-1.0, -0.7, -2.0, -1.2]
    minibatch = dict(
        logprobs=torch.tensor(old_logprobs),
        advantages=torch.tensor(raw_advantages),
        returns=torch.tensor([1.0, 0.0, 2.0, -1.0]),
        values=torch.tensor([0.5, 0.2, 1.0, -1.0]),  # the rollout's values
    )
    new = dict(
        newlogprob=torch.tensor([lp + math.log(r) for lp, r in zip(old_logprobs, ratios)], requires_grad=True),
        entropy=torch.tensor([1.2, 0.8, 1.0, 1.4], requires_grad=True),
        newvalue=torch.tensor([[0.9], [-0.5], [1.05], [-0.2]], requires_grad=True),  # (N, 1), as the critic gives
        attn_entropy=torch.tensor([[3.0, 1.0], [2.0, 2.5], [0.5, 0.25], [3.5, 1.5]], requires_grad=True),  # (N, H=2)
    )
    return ratios, raw_advantages, minibatch, new


def test_every_term_of_the_ppo_loss_against_a_hand_computation():
    args = Args(clip_coef=0.2, ent_coef=0.03, vf_coef=0.7, attn_coef=0.11, norm_adv=True, clip_vloss=True)
    ratios, raw, minibatch, new = loss_case()
    loss, stats = ppo_loss_on_rows(
        new["newlogprob"], new["entropy"], new["newvalue"], new["attn_entropy"], minibatch, args
    )

    mean, sd = statistics.mean(raw), statistics.stdev(raw)  # the sample standard deviation, as torch.std
    adv = [(a - mean) / (sd + 1e-8) for a in raw]
    assert [a > 0 for a in adv] == [a > 0 for a in raw]  # the signs (and so the clipping cases) survive
    clipped = [min(max(r, 0.8), 1.2) for r in ratios]
    policy = [-min(r * a, c * a) for r, c, a in zip(ratios, clipped, adv)]  # the pessimistic surrogate, negated
    assert [c != r for r, c in zip(ratios, clipped)] == [True, True, True, False]
    assert policy[0] == pytest.approx(-clipped[0] * adv[0]) and policy[1] == pytest.approx(-clipped[1] * adv[1])
    assert policy[2] == pytest.approx(-ratios[2] * adv[2])  # A < 0, ratio 1.5: unclipped is the worse one
    assert float(stats["policy_loss"]) == pytest.approx(statistics.mean(policy), rel=1e-5)

    value_terms = []
    for v, old, ret in zip([0.9, -0.5, 1.05, -0.2], [0.5, 0.2, 1.0, -1.0], [1.0, 0.0, 2.0, -1.0]):
        v_clip = old + min(max(v - old, -0.2), 0.2)
        value_terms.append(max((v - ret) ** 2, (v_clip - ret) ** 2))
    assert value_terms[0] == pytest.approx((0.7 - 1.0) ** 2)  # sample 0: the clipped value is further off
    assert value_terms[2] == pytest.approx((1.05 - 2.0) ** 2)  # sample 2: inside the clip range
    assert float(stats["value_loss"]) == pytest.approx(0.5 * statistics.mean(value_terms), rel=1e-5)

    entropy = statistics.mean([1.2, 0.8, 1.0, 1.4])
    attention = statistics.mean([4.0, 4.5, 0.75, 5.0])  # sum over the heads, mean over the samples
    assert float(stats["entropy"]) == pytest.approx(entropy) and float(stats["attention_entropy"]) == pytest.approx(
        attention
    )
    assert float(stats["attention_entropy_head1"]) == pytest.approx(statistics.mean([1.0, 2.5, 0.25, 1.5]))
    expected = statistics.mean(policy) - 0.03 * entropy + 0.7 * 0.5 * statistics.mean(value_terms) + 0.11 * attention
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)

    logratio = [math.log(r) for r in ratios]
    assert float(stats["old_approx_kl"]) == pytest.approx(statistics.mean(-x for x in logratio), rel=1e-5)
    assert float(stats["approx_kl"]) == pytest.approx(
        statistics.mean(r - 1 - x for r, x in zip(ratios, logratio)), rel=1e-4
    )
    assert float(stats["clipfrac"]) == pytest.approx(0.75)

    # the signs, by the gradient: the loss rises with the attention entropy and falls with the policy entropy
    loss.backward()
    assert torch.allclose(new["attn_entropy"].grad, torch.full((4, 2), 0.11 / 4))
    assert torch.allclose(new["entropy"].grad, torch.full((4,), -0.03 / 4))
    assert new["newlogprob"].grad[3] < 0  # raising an advantaged action's probability lowers the loss
    assert new["newlogprob"].grad[1] == 0 and new["newlogprob"].grad[0] == 0  # clipped: no gradient


def test_clip_fraction_counts_the_ratios_outside_the_clip_range():
    old = torch.zeros(4)
    ratios = torch.tensor([1.3, 0.95, 0.75, 1.19])  # clip 0.2: outside, inside, outside, inside
    minibatch = dict(logprobs=old, advantages=torch.randn(4), returns=torch.zeros(4), values=torch.zeros(4))
    _, stats = ppo_loss_on_rows(
        ratios.log(), torch.ones(4), torch.zeros(4), torch.zeros(4, 1), minibatch, Args(clip_coef=0.2)
    )
    assert float(stats["clipfrac"]) == pytest.approx(0.5)


def test_without_normalisation_or_value_clipping_the_raw_terms_are_used():
    args = Args(clip_coef=0.2, ent_coef=0.0, vf_coef=1.0, attn_coef=0.0, norm_adv=False, clip_vloss=False)
    ratios, raw, minibatch, new = loss_case()
    _, stats = ppo_loss_on_rows(
        new["newlogprob"], new["entropy"], new["newvalue"], new["attn_entropy"], minibatch, args
    )
    policy = [-min(r * a, min(max(r, 0.8), 1.2) * a) for r, a in zip(ratios, raw)]
    assert float(stats["policy_loss"]) == pytest.approx(statistics.mean(policy), rel=1e-5)
    plain = [(v - ret) ** 2 for v, ret in zip([0.9, -0.5, 1.05, -0.2], [1.0, 0.0, 2.0, -1.0])]
    assert float(stats["value_loss"]) == pytest.approx(0.5 * statistics.mean(plain), rel=1e-5)


def test_value_clipping_bounds_the_new_value_on_both_sides():
    """Old values 0, clip 0.2. Sample 0: V moved down to -0.5, return -1 -> V clipped to -0.2, (0.8)^2 = 0.64 beats
    the unclipped (0.5)^2. Sample 1: the mirror image. Value loss = 0.5 * mean(0.64, 0.64) = 0.32."""
    minibatch = dict(logprobs=torch.zeros(2), advantages=torch.ones(2), returns=torch.tensor([-1.0, 1.0]),
                     values=torch.zeros(2))  # fmt: skip
    args = Args(clip_coef=0.2, clip_vloss=True)
    _, stats = ppo_loss_on_rows(torch.zeros(2), torch.ones(2), torch.tensor([[-0.5], [0.5]]), torch.zeros(2, 1), minibatch,
                          args)  # fmt: skip
    assert float(stats["value_loss"]) == pytest.approx(0.32)


def test_an_agent_without_attention_logs_no_attention_entropy():
    _, _, minibatch, new = loss_case()
    _, stats = ppo_loss_on_rows(
        new["newlogprob"], new["entropy"], new["newvalue"], torch.zeros(4, 0), minibatch, Args()
    )
    assert not [k for k in stats if "attention" in k]


# ----------------------------------------------------------------------------- a recorded training run


class RecordedEnvs:
    """The real vector env, with every action sent and every reward, termination and lives count received."""

    def __init__(self, envs):
        self.envs, self.steps = envs, []

    def __getattr__(self, name):
        return getattr(self.envs, name)

    def reset(self, **kw):
        obs, info = self.envs.reset(**kw)
        self.lives = info["lives"].copy()
        return obs, info

    def step(self, actions):
        obs, reward, term, trunc, info = self.envs.step(actions)
        self.steps.append(dict(actions=actions.copy(), reward=reward.copy(), term=term.copy(), trunc=trunc.copy(),
                               lost_life=term & (info["lives"] < self.lives)))  # fmt: skip
        self.lives = info["lives"].copy()
        return obs, reward, term, trunc, info


@pytest.fixture(scope="module", params=[108_000, 600], ids=["whole games", "games cut at 600 frames"])
def qbert_run(request, tmp_path_factory) -> dict:
    """A real training run with every step recorded. Qbert: rewards of 25 and more, 4 lives, FIRE (action 1).
    2 envs x 256 steps x 2 iterations, 2 minibatches, 1 epoch. Played at random, a game of Qbert lasts 275-556
    steps: whole games give game overs, games cut at 600 frames (150 steps) give truncated games instead."""
    run = dict(gae_inputs=[], minibatch_rows=[], first_minibatches=[], frames=request.param)
    real_resolve, real_make, real_gae, real_losses = (
        ppo_attention.resolve_atari_id,
        ppo_attention.make_env,
        ppo_attention.compute_gae,
        ppo_attention.ppo_loss,
    )

    def resolve(env_id):
        game, settings = real_resolve(env_id)
        return game, settings | dict(max_num_frames_per_episode=request.param)

    def make(*a):
        run["envs"] = RecordedEnvs(real_make(*a))
        return run["envs"]

    def gae(rewards, values, dones, next_value, next_done, args):
        run["gae_inputs"].append(dict(rewards=rewards.clone(), dones=dones.clone(), next_done=next_done.clone()))
        return real_gae(rewards, values, dones, next_value, next_done, args)

    def losses(
        newlogprob, entropy, newvalue, attn_entropy, b_logprobs, b_advantages, b_returns, b_values, mb_inds, args
    ):
        batch = dict(logprobs=b_logprobs, advantages=b_advantages, returns=b_returns, values=b_values)
        minibatch = {k: v[mb_inds] for k, v in batch.items()}
        if len(run["minibatch_rows"]) % 2 == 0:  # an iteration's first minibatch: the network is still the rollout's
            run["first_minibatches"].append((newlogprob.detach(), newvalue.detach().view(-1), minibatch))
        run["minibatch_rows"].append(len(newlogprob))
        return real_losses(newlogprob, entropy, newvalue, attn_entropy, *batch.values(), mb_inds, args)

    with pytest.MonkeyPatch.context() as patch:
        for name, replacement in [("resolve_atari_id", resolve), ("make_env", make), ("compute_gae", gae),
                                  ("ppo_loss", losses)]:  # fmt: skip
            patch.setattr(ppo_attention, name, replacement)
        run["args"] = tiny_args(tmp_path_factory.mktemp("qbert"), env_id="QbertNoFrameskip-v4", num_steps=256,
                                total_timesteps=1024, precision="fp32")  # fmt: skip
        path, _ = train(run["args"])
    steps = run["envs"].steps
    run |= {key: np.stack([s[key] for s in steps]) for key in steps[0]}  # (512, 2) each: actions, reward, term, ...
    run["events"] = EventAccumulator(os.path.dirname(path))
    run["events"].Reload()
    return run


def test_rewards_are_clipped_for_learning_and_the_logged_score_is_the_raw_game_score(qbert_run):
    reward = qbert_run["reward"]  # (512, 2) raw game rewards
    assert (np.abs(reward) > 1).any()  # Qbert's rewards are not already in {-1, 0, 1}
    learned = torch.cat([g["rewards"] for g in qbert_run["gae_inputs"]]).numpy()  # (512, 2): what GAE learned from
    assert np.array_equal(learned, np.sign(reward))

    # the logged score of each finished game is the sum of its raw rewards, over all its lives
    ends = qbert_run["trunc"] | (qbert_run["term"] & ~qbert_run["lost_life"])
    expected, running = [], np.zeros(2)
    for t in range(len(reward)):
        running += reward[t]
        for i in np.flatnonzero(ends[t]):
            expected.append(running[i])
            running[i] = 0
    logged = [e.value for e in qbert_run["events"].Scalars("charts/episodic_return")]
    assert expected and sorted(logged) == pytest.approx(sorted(expected)) and max(logged) > 1


def test_forced_fire_steps_are_left_out_of_the_update(qbert_run):
    """The step after a lost life presses FIRE, and the update leaves exactly those steps out."""
    lost = qbert_run["lost_life"]
    forced = np.zeros_like(lost)
    forced[1:] = lost[:-1]
    assert forced.sum() >= 2 and (qbert_run["actions"][forced] == 1).all()
    chosen_per_iteration = [int((~forced[i * 256 : (i + 1) * 256]).sum()) for i in range(2)]
    rows = qbert_run["minibatch_rows"]
    rows_per_iteration = [sum(rows[:2]), sum(rows[2:])]  # 2 minibatches, 1 epoch each
    assert rows_per_iteration == chosen_per_iteration and sum(chosen_per_iteration) < 1024


def test_gae_gets_the_done_flags_of_lost_lives_game_overs_and_cut_games(qbert_run):
    """dones[t] marks obs t as an episode's start: step t - 1 lost a life, ended the game or was cut (truncated)."""
    ended = qbert_run["term"] | qbert_run["trunc"]  # (512, 2)
    game_over = qbert_run["term"] & ~qbert_run["lost_life"]
    assert qbert_run["lost_life"].any() and (qbert_run["trunc"] if qbert_run["frames"] == 600 else game_over).any()
    starts = np.concatenate([np.zeros((1, 2), bool), ended[:-1]])  # obs 0 of the run starts a game
    gae_inputs = qbert_run["gae_inputs"]
    assert np.array_equal(torch.cat([g["dones"] for g in gae_inputs]).numpy(), starts)
    assert [g["next_done"].tolist() for g in gae_inputs] == [ended[255].tolist(), ended[511].tolist()]


def test_the_update_starts_from_the_log_probs_and_values_the_rollout_stored(qbert_run):
    """Before an iteration's first update the network is the one that played, so it gives the stored log-probs
    and values of the actions taken again: the ratio starts at 1."""
    for newlogprob, newvalue, minibatch in qbert_run["first_minibatches"]:
        assert torch.allclose(newlogprob, minibatch["logprobs"], atol=1e-4)
        assert torch.allclose(newvalue, minibatch["values"], atol=1e-4)
        assert torch.allclose(minibatch["returns"] - minibatch["values"], minibatch["advantages"], atol=1e-5)


def test_the_learning_rate_anneals_linearly_to_zero(qbert_run):
    """CleanRL's schedule: iteration i of n uses (1 - (i - 1) / n) x the rate; 2 iterations give 1x and 0.5x."""
    learning_rates = [e.value for e in qbert_run["events"].Scalars("charts/learning_rate")]
    assert learning_rates == pytest.approx([qbert_run["args"].learning_rate, qbert_run["args"].learning_rate / 2])
