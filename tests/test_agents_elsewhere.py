"""Agents trained elsewhere: CleanRL state dicts and Stable-Baselines3 zips load into the Agent with the same outputs,
the play loop feeds each what its trainer's wrappers fed it (against SB3's and CleanRL's own wrappers, pixel for
pixel), every explanation script explains them, and bad files get one sentence.

Stable-Baselines3 is a test dependency only: real SB3 agents are trained here for a few hundred steps."""

import json
import os
import subprocess
import sys
import zipfile

import cv2
import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import ROOT, CleanRLPPOAgent, CleanRLQNetwork, cleanrl_init, with_trained_scale
from gymnasium.wrappers import FrameStackObservation, ResizeObservation, TransformObservation

import explore
import faithfulness
import interventions
import relevance_tree
import render
import saliency
from agents import QValueAgent, load_checkpoint
from atari_env import ENV_OPTIONS, make_env
from cli import UsageError, exit_on_bad_input
from play import Step, play
from ppo_attention import Agent

# Stable-Baselines3 is a test dependency only, as captum is: without it this file is skipped.
sb3 = pytest.importorskip("stable_baselines3")
atari_wrappers = pytest.importorskip("stable_baselines3.common.atari_wrappers")
make_atari_env = pytest.importorskip("stable_baselines3.common.env_util").make_atari_env
vec_env = pytest.importorskip("stable_baselines3.common.vec_env")
VecFrameStack, VecTransposeImage = vec_env.VecFrameStack, vec_env.VecTransposeImage

BREAKOUT = "BreakoutNoFrameskip-v4"
NAMES = ["NOOP", "FIRE", "RIGHT", "LEFT"]  # Breakout's actions
TOLERANCE = 1e-5  # float32: the same weights, the Agent's channels-last convolutions against plain ones


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Batches of one observation and tiny updates: on a busy CPU, threads waiting for each other cost 3-9 times."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", autouse=True)
def sb3_logs_in_tmp(tmp_path_factory):
    """SB3 makes a log folder /tmp/SB3-<time> for every model unless $SB3_LOGDIR names one: keep them in pytest's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3_logs")))
        yield


# ----------------------------------------------------------------------------- the reference envs


def sb3_env(env_id: str, seed: int):
    """What SB3's Atari agents see: make_atari_env (AtariWrapper: no-op start, frame skip 4 with max-pool, episodic
    life, FIRE reset, WarpFrame) + VecFrameStack(4) (channel-last) + VecTransposeImage (channel-first for the policy)."""
    return VecTransposeImage(VecFrameStack(make_atari_env(env_id, n_envs=1, seed=seed), n_stack=4))


def cleanrl_env(env_id: str):
    """What CleanRL's ppo_atari.py and dqn_atari.py agents see, as their make_env builds it with their pinned gymnasium
    0.29: SB3's wrappers (copied into cleanrl_utils), ResizeObservation, GrayScaleObservation (OpenCV's RGB->gray in
    0.29), FrameStack(4) (the first frame repeated), in a vector env that resets in the same step."""

    def thunk():
        env = gym.make(env_id)
        env = atari_wrappers.NoopResetEnv(env, noop_max=30)
        env = atari_wrappers.MaxAndSkipEnv(env, skip=4)
        env = atari_wrappers.EpisodicLifeEnv(env)
        if "FIRE" in env.unwrapped.get_action_meanings():
            env = atari_wrappers.FireResetEnv(env)
        env = atari_wrappers.ClipRewardEnv(env)
        env = ResizeObservation(env, (84, 84))
        gray = gym.spaces.Box(0, 255, (84, 84), np.uint8)
        env = TransformObservation(env, lambda o: cv2.cvtColor(o, cv2.COLOR_RGB2GRAY), gray)
        return FrameStackObservation(env, 4)

    return gym.vector.SyncVectorEnv([thunk], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def compare_whole_game(reference, env, seed: int, actions) -> int:
    """Step both with the same actions until the game is over, asserting equal observations; returns the number of
    episodes the agent saw restart after a lost life."""
    ref_obs = reference.reset(seed=seed)[0] if isinstance(reference, gym.vector.VectorEnv) else reference.reset()
    obs, _ = env.reset(seed=seed)
    restarts = 0
    for t, action in enumerate(actions):
        assert np.array_equal(ref_obs[0], obs), f"step {t}: {np.abs(ref_obs[0].astype(int) - obs).max()}"
        ref_obs = reference.step(np.array([action]))[0]
        obs, _, terminated, truncated, info = env.step(action)
        restarts += info.get("restart", False)
        if terminated or truncated:
            return restarts
    raise AssertionError("the game did not end")


def test_sb3_observations_equal_sb3s_own_wrappers_pixel_for_pixel():
    """A whole game of Breakout (5 lives, FIRE) and of MsPacman (3 lives, no FIRE, colours that the RGB max-pool
    makes differ from ale-py's gray max-pool), random actions, SB3's no-op start drawn from the same seed."""
    for env_id, lives in ((BREAKOUT, 5), ("MsPacmanNoFrameskip-v4", 3)):
        actions = np.random.default_rng(0).integers(0, gym.make(env_id).action_space.n, 5000)
        restarts = compare_whole_game(sb3_env(env_id, 3), make_env(env_id, **ENV_OPTIONS["sb3"]), 3, actions)
        assert restarts == lives - 1  # every lost life but the last restarts the agent's episode and frame stack


def test_cleanrl_observations_equal_cleanrls_own_wrappers_pixel_for_pixel():
    actions = np.random.default_rng(1).integers(0, 4, 5000)
    assert compare_whole_game(cleanrl_env(BREAKOUT), make_env(BREAKOUT, **ENV_OPTIONS["cleanrl"]), 4, actions) == 4


# ----------------------------------------------------------------------------- each difference, one at a time


def lose_a_life(env) -> tuple:
    """Reset, then stand still (NOOP) until a life is lost: (the observation before that step, the step's result,
    the emulator frames it took)."""
    obs, _ = env.reset(seed=0)
    lives, frame_number = env.unwrapped.ale.lives(), env.unwrapped.ale.getEpisodeFrameNumber
    while True:
        before = frame_number()
        result = env.step(0)
        if env.unwrapped.ale.lives() < lives:
            return obs, result, frame_number() - before
        obs = result[0]


def test_each_setting_of_make_env_is_a_difference_the_agent_sees():
    # padding: zeros before the first frame (ale-py, SB3) or copies of it (CleanRL's gymnasium stack)
    zero, _ = make_env(BREAKOUT, noop_max=0).reset(seed=0)
    copies, _ = make_env(BREAKOUT, noop_max=0, padding="reset").reset(seed=0)
    assert not zero[:3].any() and zero[3].any() and np.array_equal(zero[3], copies[3])
    assert all(np.array_equal(copies[k], copies[3]) for k in range(3))

    # start: ale-py presses FIRE for one frame; SB3's FireResetEnv plays a FIRE step and an action-2 step (4 frames each)
    frames = {}
    for start in ("ale", "sb3"):
        env = make_env(BREAKOUT, noop_max=0, start=start)
        env.reset(seed=0)
        frames[start] = env.unwrapped.ale.getEpisodeFrameNumber()
    assert frames == {"ale": 1, "sb3": 8}

    # life_loss: the project's next step is a forced FIRE and the stack goes on; SB3's and CleanRL's agents start a
    # new episode (a NOOP, FIRE and RIGHT step unseen) with a new stack
    env = make_env(BREAKOUT, noop_max=0)
    before, (obs, *_, info), frames = lose_a_life(env)
    assert not info["forced"] and np.array_equal(obs[:3], before[1:]) and frames == 4
    assert env.step(0)[4]["forced"]
    env = make_env(BREAKOUT, noop_max=0, life_loss="new_episode", start="sb3")
    before, (obs, *_, info), frames = lose_a_life(env)
    assert info["restart"] and not obs[:3].any() and obs[3].any() and frames == 4 * 4
    assert not env.step(0)[4]["restart"]

    # frames: ale-py max-pools gray frames, SB3 max-pools colour frames then turns them gray, and CleanRL resizes the
    # colour frames before turning them gray (rounding)
    envs = {f: make_env("MsPacmanNoFrameskip-v4", noop_max=0, frames=f) for f in ("ale", "sb3", "cleanrl")}
    seen = {f: [e.reset(seed=0)[0][-1]] for f, e in envs.items()}
    for action in np.random.default_rng(0).integers(0, 9, 50):
        for f, e in envs.items():
            seen[f].append(e.step(action)[0][-1])
    ale, sb3_, cleanrl = (np.array(seen[f], dtype=int) for f in ("ale", "sb3", "cleanrl"))
    assert np.abs(ale - sb3_).max() > 10 and (ale != sb3_).mean() < 0.01  # only where the pooled frames' colours differ
    assert np.abs(cleanrl - sb3_).max() == 1 and (cleanrl != sb3_).mean() > 0.01


# ----------------------------------------------------------------------------- CleanRL state dicts


def game_observations(options: dict, n: int = 40) -> torch.Tensor:
    """n real observations of Breakout as the agent's trainer made them, and random ones: (n + 8, 4, 84, 84) uint8."""
    env, rng = make_env(BREAKOUT, **options), np.random.default_rng(0)
    obs = [env.reset(seed=0)[0]] + [env.step(int(rng.integers(4)))[0] for _ in range(n - 1)]
    noise = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return torch.cat([torch.as_tensor(np.stack(obs)), noise])


@pytest.mark.parametrize(
    "file, run_name",
    [
        ("agent.pt", "agent"),  # what ppo_atari.py users save
        (f"{BREAKOUT}__ppo_atari_envpool__1__1700000000/ppo_atari_envpool.cleanrl_model", None),  # --save-model's
    ],
)
def test_cleanrl_ppo_state_dict_gives_the_same_policy_and_value(tmp_path, file, run_name):
    """A PPO agent's state dict loads as a policy whatever its file is called: .cleanrl_model is DQN's name too."""
    reference = with_trained_scale(CleanRLPPOAgent(4))
    path = tmp_path / file
    path.parent.mkdir(exist_ok=True)
    torch.save(reference.state_dict(), path)
    agent, meta = load_checkpoint(str(path), env_id=BREAKOUT)
    assert type(agent) is Agent and agent.attn_heads == 0 and meta["outputs"] == "policy"
    assert meta["source"] == "CleanRL ppo_atari.py" and meta["env_options"] == ENV_OPTIONS["cleanrl"]
    assert meta["action_names"] == NAMES and meta["run_name"] == (run_name or path.parent.name)
    obs = game_observations(meta["env_options"])
    with torch.no_grad():
        logits, value = reference(obs.float())
        out = agent.activations(obs)
    assert logits.abs().max() > 0.5  # far from 0, where a wrong mapping could pass
    torch.testing.assert_close(out["logits"], logits, rtol=0, atol=TOLERANCE)
    torch.testing.assert_close(out["value"], value, rtol=0, atol=TOLERANCE)


def test_cleanrl_dqn_model_gives_the_same_q_values_and_names_its_game(tmp_path):
    reference = with_trained_scale(CleanRLQNetwork(4))
    run = tmp_path / "runs" / f"{BREAKOUT}__dqn_atari__1__1700000000"  # where dqn_atari.py --save-model writes
    run.mkdir(parents=True)
    torch.save(reference.state_dict(), run / "dqn_atari.cleanrl_model")
    agent, meta = load_checkpoint(str(run / "dqn_atari.cleanrl_model"))  # no --env-id: the run folder names it
    assert isinstance(agent, QValueAgent) and meta["outputs"] == "q_values" and meta["env_id"] == BREAKOUT
    assert meta["run_name"] == run.name and meta["epsilon"] == 0.01
    obs = game_observations(meta["env_options"])
    with torch.no_grad():
        q = reference(obs.float())
        out = agent.activations(obs)
    torch.testing.assert_close(out["logits"], q, rtol=0, atol=TOLERANCE)  # the logits are the Q-values
    torch.testing.assert_close(out["value"][:, 0], q.max(1).values, rtol=0, atol=TOLERANCE)  # V(s) = max_a Q(s, a)


def test_a_q_value_agent_plays_epsilon_greedily(tmp_path):
    torch.save(with_trained_scale(CleanRLQNetwork(4)).state_dict(), tmp_path / f"{BREAKOUT}.cleanrl_model")
    agent, meta = load_checkpoint(str(tmp_path / f"{BREAKOUT}.cleanrl_model"))  # the file's name names the game
    steps = list(play(agent, meta["env_id"], seed=1, max_steps=300, env_options=meta["env_options"]))
    greedy = [s.action == int(s.activations["logits"].argmax()) for s in steps]
    assert np.mean(greedy) > 0.9  # epsilon = 0.01: a random action 1 step in 100
    for s in steps[:5]:
        expected = np.full(4, 0.01 / 4)
        expected[int(s.activations["logits"].argmax())] += 0.99
        np.testing.assert_allclose(s.probs, expected, rtol=1e-6)
        assert s.value == pytest.approx(float(s.activations["logits"].max()))
    greedy_play = play(agent, BREAKOUT, 1, greedy=True, max_steps=50, env_options=meta["env_options"])
    assert all(s.action == int(s.activations["logits"].argmax()) for s in greedy_play)


def test_faithfulness_follows_a_dqns_epsilon_greedy_decision(tmp_path):
    """For a Q-value agent the curves follow the policy it plays: each point's KL is 0 where the greedy action stays
    and (1 - eps) log((1 - eps + eps/A) / (eps/A)) where it changes; the probability is 1 - eps + eps/A or eps/A."""
    torch.manual_seed(0)
    network = cleanrl_init(CleanRLQNetwork(4))  # CleanRL's orthogonal init: decisions that move
    torch.save(network.state_dict(), tmp_path / f"{BREAKOUT}.cleanrl_model")
    agent, meta = load_checkpoint(str(tmp_path / f"{BREAKOUT}.cleanrl_model"))
    obs = game_observations(meta["env_options"], n=8)[:8]
    greedy = agent(obs)[0].argmax(-1)
    relevance = {"random": torch.rand(8, 84, 84, generator=torch.Generator().manual_seed(0))}
    curves, _ = faithfulness.deletion_insertion(agent, obs, relevance, greedy, baseline="black")
    eps, flip = 0.01, 0.99 * np.log(0.9925 / 0.0025)
    for kl, prob in (("deletion_kl", "deletion_prob"), ("insertion_kl", "insertion_prob")):
        k, p = curves["random"][kl], curves["random"][prob]
        changed = np.isclose(p, eps / 4, rtol=1e-4)
        assert np.isclose(p[~changed], 1 - eps + eps / 4, rtol=1e-4).all()
        np.testing.assert_allclose(k, np.where(changed, flip, 0.0), rtol=1e-4, atol=1e-6)
        assert changed.any() and not changed.all()  # decisions change as the frames go black, and only some


@pytest.mark.slow
def test_any_policy_gives_the_maps_and_scores_of_the_same_network_loaded_as_an_agent(tmp_path):
    """saliency.AnyPolicy around a plain nn.Module (CleanRL's layout, frames in 0..255) and the same weights loaded
    into the Agent: the same maps (Grad-CAM reads the ReLU after the last convolution) and deletion curves.

    Both run in float64 (the maps and curves follow the weights' dtype): the two paths sum in other orders (the
    Agent's channels-last convolutions, x / 255 then x 255 against the weights x 255), and in float32 those
    roundings (~1e-7 of a logit) are not small against the perturbation map's squared differences of nearly equal
    logits: a float32 run failed rtol 1e-4 on 28 of 169,344 pixels here (6e-10 off, 3e-10 allowed). In float64 the
    same roundings are ~1e-16 of a logit, 1e-9 of what rtol 1e-4 / atol 1e-6 x max allow, on any CPU. The curves
    are softmax probabilities and KLs of those logits (rounded to float32 by log_action_probabilities, the same
    float64 logits round alike), of one shared greedy action and ranking: no argmax decides them."""
    network = with_trained_scale(CleanRLPPOAgent(4))
    torch.save(network.state_dict(), tmp_path / "agent.pt")
    agent, meta = load_checkpoint(str(tmp_path / "agent.pt"), env_id=BREAKOUT)
    agent = agent.double()

    policy, off = (saliency.AnyPolicy(network, scale, layers={"conv3": network.network[5]}) for scale in (255, 256))
    assert policy.n_actions == 4 and policy.attn_heads == 0  # (logits, V)
    logits_alone = saliency.AnyPolicy(nn.Sequential(network.network, network.actor), input_scale=1.0)
    network.double()  # after AnyPolicy's float32 probe: both policies read it in float64, like the agent
    obs = game_observations(meta["env_options"], n=6)[:6]
    methods = ("gradcam", "gradient", "smoothgrad", "ig_black", "perturbation")
    kw = dict(samples=3, stride=10, ig_steps=8, signed=True)

    def maps(model, target: str, methods=methods) -> dict:
        return saliency.saliency_maps(model, obs, methods, target, generator=torch.Generator().manual_seed(0), **kw)

    def assert_same(ours: torch.Tensor, ref: torch.Tensor) -> None:
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()))

    refs = {target: maps(agent, target) for target in ("action", "value")}
    for target, ref in refs.items():
        ours = maps(policy, target)
        for m in methods:
            assert ref[m].dtype == torch.float64 and (ref[m].abs().max() > 1e-6 or m == "gradcam"), m
            assert_same(ours[m], ref[m])
    for m, wrong in maps(off, "action", ("gradient", "perturbation")).items():
        with pytest.raises(AssertionError):  # frames 0.4% too bright: the comparison sees it
            assert_same(wrong, refs["action"][m])
    relevance = {m: saliency.collapse_frames(ref[m].abs()) for m in methods}
    greedy = agent(saliency.as_float_input(agent, obs))[0].argmax(-1)
    ours, _ = faithfulness.deletion_insertion(policy, obs, relevance, greedy)
    ref, _ = faithfulness.deletion_insertion(agent, obs, relevance, greedy)
    for m in methods:
        for name in faithfulness.CURVES:
            np.testing.assert_allclose(ours[m][name], ref[m][name], rtol=1e-4, atol=1e-6)
    with pytest.raises(UsageError, match="no attention module"):
        saliency.saliency_maps(policy, obs, ("attention",))
    with pytest.raises(UsageError, match="gives no value V"):
        saliency.saliency_maps(logits_alone, obs, ("gradient",), "value")


# ----------------------------------------------------------------------------- real SB3 agents


@pytest.fixture(scope="module")
def sb3_agents(tmp_path_factory):
    """{algorithm: zip path} of a PPO, an A2C and a DQN CnnPolicy trained on Breakout for a few hundred steps."""
    folder, paths = tmp_path_factory.mktemp("sb3"), {}
    env = VecFrameStack(make_atari_env(BREAKOUT, n_envs=1, seed=0), n_stack=4)
    settings = {
        "PPO": dict(n_steps=32, batch_size=32, n_epochs=1),
        "A2C": dict(n_steps=8),
        "DQN": dict(buffer_size=1000, learning_starts=100, train_freq=4, target_update_interval=100),
    }
    for name, kw in settings.items():
        torch.manual_seed(0)
        model = getattr(sb3, name)("CnnPolicy", env, seed=0, device="cpu", **kw)
        model.learn(256)
        paths[name] = str(folder / f"{name.lower()}-{BREAKOUT}.zip")  # rl-baselines3-zoo's naming: it names the game
        model.save(paths[name])
    return paths


def sb3_outputs(name: str, path: str, obs: torch.Tensor) -> tuple:
    """SB3's own (logits or Q-values, V(s) or None) for a batch of observations, from the SB3 model it loads."""
    model = getattr(sb3, name).load(path, device="cpu")
    with torch.no_grad():
        if isinstance(model, sb3.DQN):
            return model.q_net(obs), None
        policy = model.policy
        latent = policy.mlp_extractor.forward_actor(policy.extract_features(obs))
        return policy.action_net(latent), policy.predict_values(obs)


@pytest.mark.slow
def test_sb3_agents_give_sb3s_logits_on_what_the_play_loop_feeds_them(sb3_agents):
    """The converted agent's logits (and V(s)) equal SB3's policy outputs on the same observations, and those are
    the observations SB3's own env gives for the same actions, over a whole game: what the play loop feeds them."""
    for name, path in sb3_agents.items():
        agent, meta = load_checkpoint(path)  # the file name names the game
        assert meta["source"] == f"SB3 {name}" and meta["env_id"] == BREAKOUT and meta["global_step"] == 256
        assert isinstance(agent, QValueAgent) == (meta["outputs"] == "q_values") == (name == "DQN")
        assert meta.get("epsilon") == (0.05 if name == "DQN" else None)  # DQN's exploration_final_eps
        steps = list(play(agent, meta["env_id"], seed=5, env_options=meta["env_options"]))
        obs = torch.as_tensor(np.stack([s.obs for s in steps]))
        with torch.no_grad():
            out = agent.activations(obs)
        logits, value = sb3_outputs(name, path, obs)
        error = (out["logits"] - logits).abs().max().item()
        print(f"SB3 {name}: {len(steps)} steps of a whole game, max |logit difference| {error:.2e}")
        assert error <= TOLERANCE
        if value is not None:
            torch.testing.assert_close(out["value"], value, rtol=0, atol=TOLERANCE)
        venv = sb3_env(BREAKOUT, 5)
        sb3_obs = [venv.reset()] + [venv.step(np.array([s.action]))[0] for s in steps[:-1]]
        assert all(np.array_equal(o[0], s.obs) for o, s in zip(sb3_obs, steps))


@pytest.fixture(scope="module")
def sb3_unusual(tmp_path_factory):
    """{case: zip path} of PPO CnnPolicies trained for 256 steps that SB3 saves with cloudpickled entries beside
    plain ones: policy_kwargs holding a class (RMSprop) and normalize_images=False (the CNN reads frames in 0..255),
    and an observation space of float32 stacks (4, 84, 84), which this project's play loop does not give."""
    folder, paths = tmp_path_factory.mktemp("sb3_unusual"), {}
    as_float = lambda env: TransformObservation(  # noqa: E731
        env, lambda o: o.astype(np.float32), gym.spaces.Box(0, 255, (4, 84, 84), np.float32)
    )
    envs = {
        "raw frames, RMSprop": VecFrameStack(make_atari_env(BREAKOUT, n_envs=1, seed=0), n_stack=4),
        "float32 frames": as_float(make_env(BREAKOUT, **ENV_OPTIONS["sb3"])),
    }
    kwargs = dict(normalize_images=False, optimizer_class=torch.optim.RMSprop)
    for case, env in envs.items():
        torch.manual_seed(0)
        model = sb3.PPO("CnnPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu",
                        policy_kwargs=kwargs)  # fmt: skip
        model.learn(256)
        paths[case] = str(folder / f"ppo-{case.split()[0]}-{BREAKOUT}.zip")
        model.save(paths[case])
    return paths


def test_sb3_fields_beside_serialized_ones_are_read(sb3_unusual):
    """SB3 cloudpickles policy_kwargs that hold a class and writes normalize_images beside it as plain JSON: the
    agent divides by 255 only where SB3 did, so its logits and V(s) are SB3's own (model.policy's)."""
    path = sb3_unusual["raw frames, RMSprop"]
    data = json.loads(zipfile.ZipFile(path).read("data"))
    assert ":serialized:" in data["policy_kwargs"] and data["policy_kwargs"]["normalize_images"] is False
    assert ":serialized:" in data["observation_space"] and data["observation_space"]["_shape"] == [4, 84, 84]
    agent, meta = load_checkpoint(path)
    obs = game_observations(meta["env_options"])
    with torch.no_grad():
        out = agent.activations(obs)
    logits, value = sb3_outputs("PPO", path, obs)
    assert logits.abs().max() > 1  # raw frames: far from 0, where a missing or extra / 255 could pass
    torch.testing.assert_close(out["logits"], logits, rtol=1e-5, atol=TOLERANCE * float(logits.abs().max()))
    torch.testing.assert_close(out["value"], value, rtol=1e-5, atol=TOLERANCE * float(value.abs().max()))


def test_an_sb3_agent_of_other_observations_is_refused(sb3_unusual, tmp_path):
    """float32 stacks of the same shape fit the Nature CNN's weights, but the play loop gives uint8 frames; and a
    data JSON whose observation_space or normalize_images cannot be read without unpickling is refused too."""
    with pytest.raises(UsageError, match=r"saw float32 observations of shape \(4, 84, 84\), not 4 stacked 84x84"):
        load_checkpoint(sb3_unusual["float32 frames"])
    original = sb3_unusual["raw frames, RMSprop"]
    data = json.loads(zipfile.ZipFile(original).read("data"))
    edits = {
        "observation_space": lambda d: {k: v for k, v in d["observation_space"].items() if k != "_shape"},
        "normalize_images": lambda d: d["policy_kwargs"] | {"normalize_images": "False"},  # a str(): not JSON's
    }
    for words, edit in edits.items():
        changed = data | {"observation_space" if words == "observation_space" else "policy_kwargs": edit(data)}
        path = tmp_path / f"ppo-{words}-{BREAKOUT}.zip"
        with zipfile.ZipFile(original) as z, zipfile.ZipFile(path, "w") as out:
            for name in z.namelist():
                out.writestr(name, json.dumps(changed) if name == "data" else z.read(name))
        with pytest.raises(UsageError, match=f"does not say in plain JSON .*{words}"):
            load_checkpoint(str(path))


def cli(script, argv: list):
    return exit_on_bad_input(script.main, [str(a) for a in argv])


@pytest.mark.parametrize("name", ["PPO", "DQN"])
@pytest.mark.slow
def test_every_script_explains_an_sb3_agent(sb3_agents, tmp_path, name, capsys):
    path, q = sb3_agents[name], name == "DQN"
    out = cli(saliency, ["--checkpoint", path, "--steps", "5", "12", "--samples", "2", "--out", tmp_path / "s"])
    data = np.load(os.path.join(out, "saliency.npz"))
    methods = list(data["methods"])
    assert (
        "attention" not in methods
        and "gradcam" in methods
        and all(np.isfinite(data[f"maps_{m}"]).all() for m in methods)
    )
    assert all(np.abs(data[f"maps_{m}"]).max() > 0 for m in methods if m != "gradcam")  # Grad-CAM may be 0: a ReLU
    logits = load_checkpoint(path)[0](torch.as_tensor(data["observations"]))[0]
    greedy = logits.argmax(-1).tolist()
    assert list(data["explained_actions"]) == (greedy if q else list(data["actions"]))  # a DQN: the greedy action
    assert "no attention module" in capsys.readouterr().out

    for overlay in ("saliency", "tree"):
        argv = ["--checkpoint", path, "--max-steps", "12", "--overlay", overlay, "--method", "gradient"]
        result = cli(render, [*argv, "--out", tmp_path / overlay])
        assert result["frames"] == 12 and os.path.basename(result["path"]).startswith(overlay)
        assert result["agents"][0]["env_id"] == BREAKOUT

    out = cli(relevance_tree, ["--checkpoint", path, "--steps", "5", "12", "--out", tmp_path / "t"])
    printed = capsys.readouterr().out
    assert "trees start at the peaks of Grad-CAM" in printed
    for i, t in enumerate((5, 12)):  # the same steps as saliency.py's: the same game
        tree, info = relevance_tree.load_tree(os.path.join(out, f"step_{t:05d}.json"))
        explained = greedy[i] if q else int(data["actions"][i])
        assert all(root["layer"] == "gradcam" and root["channel"] == explained for root in tree)
        assert info["explains"] == f"logit of {NAMES[explained]}"
        assert (not tree) == (f"note: step {t} has no tree" in printed)  # Grad-CAM of zeros: said in one sentence

    page = cli(explore, ["--checkpoint", path, "--steps", "0", "3", "--methods", "gradient", "--out", tmp_path / "e"])
    data = explore.read_page(page)["data"]
    assert data["heads"] == 0 and len(data["steps"]["t"]) == 3 and data["q_values"] == q
    assert data["layers"] == list(relevance_tree.GRADCAM_LAYERS)  # its 3D tree starts at Grad-CAM's peaks

    out = cli(faithfulness, ["--checkpoint", path, "--states", "4", "--games", "1", "--max-steps", "40",
                             "--sanity-states", "2", "--samples", "2", "--method", "gradient", "random",
                             "--out", tmp_path / "f"])  # fmt: skip
    report = json.load(open(os.path.join(out, "faithfulness.json")))
    policy = "epsilon-greedy, epsilon 0.05" if q else "policy"  # SB3 DQN's exploration_final_eps
    assert report["policy"] == policy and set(report["methods"]) == {"gradient", "random"}
    assert ("the curves follow the policy it plays, epsilon-greedy" in capsys.readouterr().out) == q

    report = cli(interventions, ["--checkpoint", path, "--games", "1", "--max-steps", "30", "--states", "8",
                                 "--examples", "2", "--out", tmp_path / "i"])  # fmt: skip
    assert report["parts"] == ["removal", "examples"] and report["policy"] == policy  # parts 3 and 4, with a note
    assert "no maps to ablate (part 1) or steer (part 2)" in report["notes"][0] and report["removal"]


def test_the_panel_shows_a_dqns_q_values_from_the_lowest_to_the_highest():
    q = torch.tensor([[0.61, 0.64, 0.67, 0.625]])  # a DQN's Q-values differ by little
    frame, attention = np.zeros((210, 160, 3), np.uint8), np.zeros((0, 7, 7), np.float32)
    step = Step(
        0, np.zeros((4, 84, 84), np.uint8), frame, {"logits": q}, np.full(4, 0.25), 0.67, attention, 2, False, 0, 0
    )
    panel = render.Panel(480, 640, 3, "agent", NAMES, epsilon=0.01)
    img = panel.render(step, "game", render.NoOverlay(3))
    for i, (v, (y0, y1, x0, x1)) in enumerate(zip(q[0].tolist(), panel.bars)):
        colour = np.array([255, 165, 30] if i == 2 else [90, 130, 200])  # TAKEN for the taken action, else BAR
        filled = (img[(y0 + y1) // 2, x0 : x1 + 1] == colour).all(-1).sum()
        assert abs(filled - (v - 0.61) / 0.06 * (x1 - x0)) <= 1.5, i  # the lowest empty, the highest full


# ----------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, sb3_agents):
    folder = tmp_path_factory.mktemp("bad")
    with zipfile.ZipFile(folder / "photos.zip", "w") as z:
        z.writestr("cat.jpg", b"not an agent")
    mlp = sb3.PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, device="cpu")
    mlp.save(folder / "mlp.zip")
    partial = CleanRLPPOAgent(4).state_dict()
    del partial["critic.bias"], partial["critic.weight"]
    torch.save(partial, folder / "partial.pt")
    wider = CleanRLQNetwork(4).state_dict()
    wider["network.0.weight"] = torch.zeros(32, 3, 8, 8)  # 3 stacked frames
    torch.save(wider, folder / "wider.cleanrl_model")
    torch.save(CleanRLPPOAgent(4).state_dict(), folder / "agent.pt")
    return folder


@pytest.mark.parametrize(
    "argv, words",
    [
        (["{bad}/photos.zip"], "is a zip file but not a Stable-Baselines3 agent"),
        (["{bad}/mlp.zip", "--env-id", BREAKOUT], "without the Nature CNN (an MlpPolicy"),
        (["{bad}/partial.pt", "--env-id", BREAKOUT], "lacks critic.bias, critic.weight"),
        (["{bad}/wider.cleanrl_model", "--env-id", BREAKOUT], "its layers have other shapes"),
        (["{bad}/agent.pt"], "does not say which game its CleanRL ppo_atari.py agent plays; add --env-id"),
        (["{bad}/agent.pt", "--env-id", "PongNoFrameskip-v4"], "has 4 outputs but PongNoFrameskip-v4 has 6 actions"),
        (["{bad}/agent.pt", "--env-id", "ALE/Breakout-v5"], "could not have played ALE/Breakout-v5"),
        (["{bad}/agent.pt", "--env-id", "CartPole-v1"], "is not an RGB Atari id"),
    ],
)
@pytest.mark.parametrize("script", [saliency, relevance_tree, render, faithfulness, explore, interventions])
def test_bad_files_get_one_sentence(bad_files, tmp_path, script, argv, words):
    argv = [a.format(bad=bad_files) for a in argv]
    with pytest.raises(SystemExit) as stopped:
        cli(script, ["--checkpoint", *argv, "--out", tmp_path / "o"])
    message = stopped.value.code
    assert isinstance(message, str) and message.startswith("error: ") and words in message, message
    assert len(message.splitlines()) == 1 and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_bad_file_exits_non_zero_with_one_line(bad_files):
    result = subprocess.run(
        [sys.executable, "saliency.py", "--checkpoint", str(bad_files / "mlp.zip"), "--env-id", BREAKOUT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and "MlpPolicy" in result.stderr


def test_sb3_data_is_read_without_unpickling(sb3_agents, monkeypatch):
    """The zip's data JSON holds cloudpickled entries (base64 under ':serialized:'); none is ever unpickled."""
    import pickle

    data = json.loads(zipfile.ZipFile(sb3_agents["PPO"]).read("data"))
    assert any(isinstance(v, dict) and ":serialized:" in v for v in data.values())

    def refuse(*args, **kwargs):
        raise AssertionError("unpickled")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    load_checkpoint(sb3_agents["PPO"])
