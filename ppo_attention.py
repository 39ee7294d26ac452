"""PPO on Atari with a region-sensitive attention module and an attention-entropy penalty.

CleanRL's `ppo_atari.py` (Huang et al.) with one block between the convolutions and the fully
connected layer: the region-sensitive module of Yang et al. 2018 (arXiv 1812.11276), as used by
rl-attention (Nikulin et al. 2019, arXiv 1908.02511). Every decision goes through its 7x7 maps.

    obs (B, 4, 84, 84) uint8 -> conv1 -> conv2 -> conv3 (B, 64, 7, 7)
        -> features = conv3 L2-normalised over channels at each of the 49 places
        -> attn_logits = 1x1 conv 512 (ELU) -> 1x1 conv H    (B, H, 7, 7)
        -> attention = softmax over the 49 places, per head   (each head sums to 1)
        -> masked = features * sum of the heads -> fc 512 -> actor (B, A), critic (B, 1)

    loss = pg_loss - ent_coef * policy_entropy + vf_coef * v_loss + attn_coef * sum_h H(A_h)
    H(A_h) = -sum_ij A_h[i,j] log A_h[i,j], from the logits with log_softmax (at most ln 49 per head)

`--attn-heads 0` trains the plain Nature-CNN agent through the same code, as the baseline.
The explanation scripts import `Agent`, `make_env`, `play` and `load_checkpoint` from here.

    python ppo_attention.py --env-id BreakoutNoFrameskip-v4 --attn-coef 5e-4
"""

import contextlib
import dataclasses
import difflib
import itertools
import os
import random
import re
import signal
import sys
import time
from dataclasses import dataclass
from typing import Literal, Optional

import ale_py
import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro
from ale_py.vector_env import AtariVectorEnv
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation
from torch.distributions.categorical import Categorical

gym.register_envs(ale_py)
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no emulator banner on stderr

CHECKPOINT_VERSION = 1
FIRE = 1  # in every ale-py game that has FIRE, it is action 1


@dataclass
class Args:
    """PPO with region-sensitive attention on an Atari game. One *iteration* collects
    num_envs x num_steps agent steps (one agent step = 4 game frames), then updates the network
    on them for update_epochs epochs of num_minibatches minibatches."""

    exp_name: str = "ppo_attention"
    """the name of this experiment (part of the run name)"""
    seed: int = 1
    """seed of the experiment (python, numpy, torch and the games)"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """train on CUDA when it is available"""
    runs_dir: str = "runs"
    """folder that receives `<run_name>/` with the TensorBoard events and the checkpoint `run.pt`"""
    resume: Optional[str] = None
    """a `run.pt` (or its run folder) to continue; flags not given keep the saved values, and only
    --total-timesteps (to extend the run), --save-interval and --cuda may differ from them"""
    save_interval: int = 50
    """write the checkpoint every this many iterations (and always at the end or on Ctrl-C)"""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """arithmetic of the network's passes in rollout and update (bf16: torch.autocast; weights, optimiser,
    log-probabilities and losses stay fp32); auto: bf16 where the CPU or GPU computes it natively, else fp32"""

    # Algorithm specific arguments
    env_id: str = "BreakoutNoFrameskip-v4"
    """the id of the Atari game (e.g. BreakoutNoFrameskip-v4, ALE/Breakout-v5, PongNoFrameskip-v4)"""
    total_timesteps: int = 10000000
    """total agent steps (summed over the environments), rounded down to whole iterations"""
    learning_rate: float = 2.5e-4
    """the learning rate of the optimizer"""
    num_envs: int = 8
    """the number of parallel game environments"""
    num_steps: int = 128
    """the number of steps to run in each environment per iteration"""
    anneal_lr: bool = True
    """toggle learning rate annealing (linear, to 0 at the last iteration)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    gae_lambda: float = 0.95
    """the lambda for the general advantage estimation"""
    num_minibatches: int = 4
    """the number of mini-batches"""
    update_epochs: int = 4
    """the K epochs to update the policy"""
    norm_adv: bool = True
    """toggles advantages normalization"""
    clip_coef: float = 0.1
    """the surrogate clipping coefficient"""
    clip_vloss: bool = True
    """toggles whether or not to use a clipped loss for the value function"""
    ent_coef: float = 0.01
    """coefficient of the policy entropy bonus"""
    vf_coef: float = 0.5
    """coefficient of the value function loss"""
    max_grad_norm: float = 0.5
    """the maximum norm for the gradient clipping"""
    target_kl: Optional[float] = None
    """the target KL divergence threshold (stop the epochs early above it)"""

    # Attention specific arguments
    attn_heads: int = 2
    """number of attention heads; 0 trains the plain Nature-CNN agent (no attention module)"""
    attn_coef: float = 5e-4
    """coefficient of the attention-entropy penalty (0 disables it; values >= 1e-2 tend to stop learning)"""

    # to be filled in runtime
    batch_size: tyro.conf.Suppress[int] = 0
    minibatch_size: tyro.conf.Suppress[int] = 0
    num_iterations: tyro.conf.Suppress[int] = 0


# ----------------------------------------------------------------------------- environments


def resolve_atari_id(env_id: str) -> tuple:
    """(ale-py game name, the keyword arguments of its settings) of a gymnasium Atari id, or ValueError
    suggesting ids that work (RGB frames and a fixed frame skip: NoFrameskip-v4 or v5)."""
    atari = {k: s.kwargs for k, s in gym.registry.items() if s.entry_point == "ale_py.env:AtariEnv"}
    if env_id in gym.registry and env_id not in atari:
        raise ValueError(f"'{env_id}' is not an Atari game; this script trains on games like BreakoutNoFrameskip-v4.")
    if env_id not in atari or not usable(atari[env_id]):
        accepted = [k for k, kw in atari.items() if usable(kw)]
        game = re.sub(r"^ale/|-v\d+$|noframeskip|deterministic|[-_ ]", "", env_id.lower())
        close = [k for k in accepted if atari[k]["game"].replace("_", "") == game and k.endswith(("skip-v4", "-v5"))]
        close = close or difflib.get_close_matches(env_id, accepted, n=2, cutoff=0.6) or ["BreakoutNoFrameskip-v4"]
        why = "uses a random frame skip or RAM observations" if env_id in atari else "is not a known game id"
        raise ValueError(f"'{env_id}' {why}; try {' or '.join(close[:2])}.")
    kw = atari[env_id]
    settings = dict(repeat_action_probability=0.25, full_action_space=False, max_num_frames_per_episode=108000)
    return kw["game"], {k: kw.get(k, default) for k, default in settings.items()}


def usable(kw: dict) -> bool:
    """Whether a registered Atari id gives RGB frames and a fixed frame skip (what the preprocessing needs)."""
    return kw.get("obs_type", "rgb") == "rgb" and isinstance(kw.get("frameskip", 1), int)


def make_vector_env(env_id: str, num_envs: int) -> AtariVectorEnv:
    """ale-py's C++ vector env: up to 30 no-op starts, FIRE on reset, frame skip 4 with max-pool,
    84x84 grayscale, 4 stacked frames. A lost life is `terminated` but the game goes on (CleanRL's
    EpisodicLifeEnv; the training loop presses FIRE next, as CleanRL's FireResetEnv). Rewards stay
    raw (clipped in the loop, so logged returns are game scores); same-step autoreset for GAE."""
    game, settings = resolve_atari_id(env_id)
    return AtariVectorEnv(
        game, num_envs, autoreset_mode="SameStep", noop_max=30, life_loss_info=True, reward_clipping=False, **settings
    )


class FireAndNoopReset(gym.Wrapper):
    """Reset as `AtariVectorEnv` does: FIRE for one frame (where the game has it), then single-frame no-ops."""

    def __init__(self, env: gym.Env, noop_max: int = 30):
        super().__init__(env)
        self.noop_max = noop_max
        self.fire = "FIRE" in env.unwrapped.get_action_meanings()

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        noops = int(self.np_random.integers(0, max(self.noop_max, 1))) - int(self.fire)
        for action in [FIRE] * self.fire + [0] * max(noops, 0):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


class FireAfterLifeLoss(gym.Wrapper):
    """The agent step after a lost life presses FIRE whatever the agent chose, as the training loop does
    (CleanRL's FireResetEnv; in Breakout the ball stays put until FIRE). `info["forced"]` marks that step."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.has_fire = "FIRE" in env.unwrapped.get_action_meanings()
        self.fire_next, self.lives = False, 0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.fire_next, self.lives = False, self.env.unwrapped.ale.lives()
        return obs, info

    def step(self, action):
        forced = self.fire_next
        obs, reward, terminated, truncated, info = self.env.step(FIRE if forced else action)
        lives = self.env.unwrapped.ale.lives()
        self.fire_next = self.has_fire and 0 < lives < self.lives and not (terminated or truncated)
        self.lives = lives
        return obs, reward, terminated, truncated, {**info, "forced": forced}


def make_env(env_id: str, seed: Optional[int] = None, noop_max: int = 30) -> gym.Env:
    """One game that feeds the agent exactly what training fed it: (4, 84, 84) uint8 stacks.

    An episode is a whole game (all lives). `env.render()` returns the 210x160x3 colour frame of
    the last emulator step. `noop_max=0` gives the start of `AtariVectorEnv(noop_max=0)`.
    """
    env = gym.make(env_id, frameskip=1, render_mode="rgb_array", **resolve_atari_id(env_id)[1])
    env = FireAndNoopReset(env, noop_max)
    env = AtariPreprocessing(env, noop_max=0, frame_skip=4, screen_size=84, terminal_on_life_loss=False)
    env = FireAfterLifeLoss(env)
    env = FrameStackObservation(env, 4, padding_type="zero")
    if seed is not None:
        env.action_space.seed(seed)
    return env


# ----------------------------------------------------------------------------- the agent


def layer_init(layer, std=np.sqrt(2), bias_const=0.0):
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    """Nature CNN + region-sensitive attention (Yang et al. 2018) + actor and critic heads.

    Receptive fields in input pixels (size, stride): conv1 (8, 4), conv2 (20, 8), conv3 and
    attention (36, 8). Unit (y, x) covers rows [y*s, y*s + r) and columns [x*s, x*s + r).
    """

    RECEPTIVE_FIELDS = {"conv1": (8, 4), "conv2": (20, 8), "conv3": (36, 8), "attention": (36, 8)}

    def __init__(self, n_actions: int, attn_heads: int = 2):
        super().__init__()
        self.n_actions, self.attn_heads = n_actions, attn_heads
        self.conv1 = layer_init(nn.Conv2d(4, 32, 8, stride=4))
        self.conv2 = layer_init(nn.Conv2d(32, 64, 4, stride=2))
        self.conv3 = layer_init(nn.Conv2d(64, 64, 3, stride=1))
        if attn_heads > 0:
            self.attn_hidden = layer_init(nn.Conv2d(64, 512, 1))
            self.attn_logits = layer_init(nn.Conv2d(512, attn_heads, 1))
        self.fc = layer_init(nn.Linear(64 * 7 * 7, 512))
        self.actor = layer_init(nn.Linear(512, n_actions), std=0.01)
        self.critic = layer_init(nn.Linear(512, 1), std=1)

    def activations(self, x: torch.Tensor) -> dict:
        """Every intermediate tensor by name. x: (B, 4, 84, 84) uint8 (divided by 255 here), or
        floating-point input already in [0, 1] (what the saliency methods differentiate)."""
        a = {}
        if x.dtype == torch.uint8:
            x = x.float().div(255.0)
        x = x.contiguous(memory_format=torch.channels_last)
        a["conv1"] = F.relu(self.conv1(x))  # (B, 32, 20, 20)
        a["conv2"] = F.relu(self.conv2(a["conv1"]))  # (B, 64, 9, 9)
        a["conv3"] = F.relu(self.conv3(a["conv2"]))  # (B, 64, 7, 7)
        B = x.shape[0]
        if self.attn_heads > 0:
            a["features"] = F.normalize(a["conv3"], dim=1)  # unit L2 norm over channels at each place
            a["attn_hidden"] = F.elu(self.attn_hidden(a["features"]))  # (B, 512, 7, 7)
            a["attn_logits"] = self.attn_logits(a["attn_hidden"])  # (B, H, 7, 7)
            a["attention"] = a["attn_logits"].flatten(2).softmax(-1).view(B, -1, 7, 7)  # softmax over 49 places
            a["masked"] = a["features"] * a["attention"].sum(1, keepdim=True)  # (B, 64, 7, 7)
        else:  # plain Nature CNN
            a["features"] = a["masked"] = a["conv3"]
            a["attn_logits"] = a["attention"] = x.new_zeros(B, 0, 7, 7)
        a["fc"] = F.relu(self.fc(a["masked"].flatten(1)))  # (B, 3136) -> (B, 512)
        a["logits"] = self.actor(a["fc"])
        a["value"] = self.critic(a["fc"])
        return a

    def forward(self, x):
        """(policy logits (B, A), value (B, 1), attention maps (B, H, 7, 7))."""
        a = self.activations(x)
        return a["logits"], a["value"], a["attention"]

    def get_value(self, x):
        return self.forward(x)[1].float()

    def get_action_and_value(self, x, action=None):
        """Outputs are fp32 even under bf16 autocast: log-probabilities, entropies and values enter the losses."""
        a = self.activations(x)
        probs = Categorical(logits=a["logits"].float())
        if action is None:
            action = probs.sample()
        attn_entropy = attention_entropy(a["attn_logits"].float())  # (B, H)
        return action, probs.log_prob(action), probs.entropy(), a["value"].float(), attn_entropy


def attention_entropy(attn_logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each head's softmax map, from its logits. (B, H, 7, 7) -> (B, H), in nats."""
    logp = F.log_softmax(attn_logits.flatten(2), dim=-1)  # (B, H, 49)
    return -(logp.exp() * logp).sum(-1)


# ----------------------------------------------------------------------------- playing one game


@dataclass
class Step:
    """One agent step of `play`."""

    t: int  # agent step of the game, 0 = the first observation
    obs: np.ndarray  # (4, 84, 84) uint8: what the agent saw
    frame: np.ndarray  # (210, 160, 3) uint8: the colour frame of the newest of the 4 frames
    acts: dict  # agent.activations(obs) with a batch of 1, on the agent's device
    probs: np.ndarray  # (A,) the policy
    value: float  # V(s)
    attention: np.ndarray  # (H, 7, 7) the attention maps; H = 0 without attention
    action: int  # the action taken
    forced: bool  # True when the game pressed FIRE after a lost life (the agent's choice was overridden)
    reward: float  # raw game reward of this step
    score: float  # game score so far, this step's reward included


@torch.no_grad()
def play(agent: Agent, env_id: str, seed: int = 1, greedy: bool = False, max_steps: Optional[int] = None):
    """Play one game (all lives) with the agent and yield a `Step` for every agent step.

    The game starts from `seed` (its no-op start, sticky actions); actions are sampled from the
    policy with a torch.Generator seeded with `seed`, or the most probable one when `greedy`.
    Ends when the game does or after `max_steps` steps.
    """
    device = next(agent.parameters()).device
    env = make_env(env_id)
    generator = torch.Generator(device=device).manual_seed(seed)
    try:
        obs, _ = env.reset(seed=seed)
        score = 0.0
        for t in itertools.count() if max_steps is None else range(max_steps):
            frame = env.render()
            acts = agent.activations(torch.as_tensor(obs, device=device)[None])
            probs = acts["logits"].float().softmax(-1)[0]  # (A,)
            action = int(probs.argmax() if greedy else torch.multinomial(probs, 1, generator=generator))
            next_obs, reward, terminated, truncated, info = env.step(action)
            score += float(reward)
            probs, attn = probs.cpu().numpy(), acts["attention"][0].float().cpu().numpy()
            forced, value = info["forced"], float(acts["value"][0, 0])
            yield Step(
                t, np.asarray(obs), frame, acts, probs, value, attn, FIRE if forced else action, forced, reward, score
            )
            if terminated or truncated:
                break
            obs = next_obs
    finally:
        env.close()


def play_to(agent: Agent, env_id: str, steps, seed: int = 1, greedy: bool = False) -> tuple:
    """Play one game up to the last of `steps`: ({t: Step} for the steps in `steps`, every action taken).
    ValueError (one sentence) when the game ends before the last of them."""
    kept, actions = {}, []
    for step in play(agent, env_id, seed, greedy, max_steps=max(steps) + 1):
        actions.append(step.action)
        if step.t in steps:
            kept[step.t] = step
    if len(kept) < len(set(steps)):
        raise ValueError(f"step {max(steps)} is beyond the game, which ended after {len(actions)} steps.")
    return kept, actions


# ----------------------------------------------------------------------------- checkpoints


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message is one sentence for the user."""


def save_checkpoint(path: str, agent: Agent, optimizer, args: Args, meta: dict) -> None:
    """Write the checkpoint atomically: a temporary file in the same folder, then a rename.
    Without an optimizer it holds the weights and metadata only (a shipped agent: it cannot resume)."""
    ckpt = {
        "format_version": CHECKPOINT_VERSION,
        "model": agent.state_dict(),
        "args": dataclasses.asdict(args),
        **meta,  # env_id, n_actions, action_names, attn_heads, global_step, iteration, run_name
    }
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):  # a failed or interrupted write leaves the old checkpoint as it was
            os.remove(tmp)


def read_checkpoint(path: str) -> dict:
    """The raw checkpoint dict (safe: weights_only), or CheckpointError. A run folder means its run.pt."""
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "run.pt")):
            raise CheckpointError(f"the folder '{path}' holds no run.pt.")
        path = os.path.join(path, "run.pt")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint '{path}' does not exist.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if "Unsupported global" in str(e):  # a class or function in the pickle: could run code
            raise CheckpointError(
                f"'{path}' holds pickled Python objects, which could run code; it is refused (only weights_only checkpoints load)."
            ) from None
        raise CheckpointError(f"'{path}' is not a readable checkpoint (corrupt or truncated file).") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "format_version" not in ckpt:
        raise CheckpointError(f"'{path}' is not a checkpoint written by ppo_attention.py.")
    if ckpt["format_version"] != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"'{path}' has checkpoint format {ckpt['format_version']}; this code reads format {CHECKPOINT_VERSION}."
        )
    return {**ckpt, "path": path}


def load_checkpoint(path: str, device="cpu") -> tuple:
    """A ready `Agent` in eval mode and the checkpoint's metadata (everything but the tensors)."""
    ckpt = read_checkpoint(path)
    try:
        with torch.device("meta"):  # no random init: the weights come from the file
            agent = Agent(int(ckpt["n_actions"]), int(ckpt["attn_heads"]))
        agent.load_state_dict(ckpt["model"], assign=True)
    except (KeyError, RuntimeError, TypeError, ValueError):
        raise CheckpointError(f"'{ckpt['path']}' does not match the Agent architecture of ppo_attention.py.") from None
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer")}
    return agent.to(device).eval(), meta


# ----------------------------------------------------------------------------- conventions of every script


def pick_device(cuda: bool) -> torch.device:
    return torch.device("cuda" if cuda and torch.cuda.is_available() else "cpu")


def make_writable_folder(path: str, what: str = "output folder") -> None:
    """Create `path` if needed and check that a file can be written there (ValueError if not)."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write_test{os.getpid()}")
        open(probe, "w").close()
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"cannot write the {what} '{path}': {e.strerror}.") from None


@contextlib.contextmanager
def output_folder(out: Optional[str], run_name: str, kind: str, force: bool = False):
    """The folder an explanation script writes into: `--out`, or a new `runs/<run_name>/<kind>__<unix time>/`.

    An `--out` that already holds files is refused unless `force`. A folder made here and left
    empty (bad input, Ctrl-C before the first file) is removed again.
    """
    if out is None:
        base = os.path.join("runs", run_name.replace("/", "-"), f"{kind}__{int(time.time())}")
        out, n = base, 1
        while os.path.exists(out):
            n += 1
            out = f"{base}-{n}"
    elif os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out '{out}' is a file, not a folder.")
    elif os.path.isdir(out) and os.listdir(out) and not force:
        raise ValueError(f"--out '{out}' already holds files; choose another folder or add --force to write into it.")
    created = not os.path.exists(out)
    make_writable_folder(out)
    try:
        yield out
    finally:
        if created and os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)


class Progress:
    """Progress on stderr: on a terminal one line rewritten in place, in a log a plain line every `every` seconds."""

    def __init__(self, every: float = 30.0):
        self.tty, self.every, self.last = sys.stderr.isatty(), every, -float("inf")

    def __call__(self, message: str, done: bool = False) -> None:
        now = time.monotonic()
        if done or now - self.last >= (0.1 if self.tty else self.every):
            self.last = now
            end = "\n" if done or not self.tty else ""
            print(f"\r{message}\033[K" if self.tty else message, end=end, file=sys.stderr, flush=True)


def exit_on_bad_input(main, argv=None):
    """Run a script's `main(args)`: bad input ends with one sentence on stderr and exit 1, Ctrl-C with exit 130."""
    try:
        code = main(argv)
        if code == 130:  # stopped by Ctrl-C and the work is saved: a late second Ctrl-C must not kill the exit
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        return code
    except (ValueError, CheckpointError) as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        print("\nstopped by Ctrl-C.", file=sys.stderr)
        sys.exit(130)


# ----------------------------------------------------------------------------- setup


def check_args(args: Args) -> None:
    """Reject bad settings with one sentence (ValueError) before anything is written."""
    resolve_atari_id(args.env_id)
    for name in ("num_envs", "num_steps", "num_minibatches", "update_epochs", "save_interval", "total_timesteps"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}.")
    batch = args.num_envs * args.num_steps
    if args.total_timesteps < batch:
        raise ValueError(f"--total-timesteps {args.total_timesteps} is less than one iteration ({batch} steps).")
    if batch < args.num_minibatches:
        raise ValueError(f"--num-minibatches {args.num_minibatches} is more than the {batch} steps of an iteration.")
    if args.attn_coef < 0 or args.attn_heads < 0:
        raise ValueError(f"--attn-coef and --attn-heads must be >= 0, got {args.attn_coef} and {args.attn_heads}.")
    if args.learning_rate <= 0:
        raise ValueError(f"--learning-rate must be positive, got {args.learning_rate}.")


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 natively: a CUDA GPU that supports it, or a CPU with
    avx512_bf16 / amx_bf16 (x86) or bf16 (Arm) in /proc/cpuinfo. Elsewhere bf16 is emulated and slow."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16", "bf16"))


def resolve_precision(requested: str, device: torch.device) -> str:
    """fp32 or bf16 for the update; bf16 asked for where it is not native falls back to fp32, with one sentence."""
    native = native_bf16(device)
    if requested == "bf16" and not native:
        print(f"bf16 is not supported natively on this {device.type.upper()}; training in fp32 instead.")
        return "fp32"
    return "bf16" if requested == "bf16" or (requested == "auto" and native) else "fp32"


def saved_run(path: str) -> tuple:
    """(the saved run's Args, its checkpoint) for --resume; CheckpointError if it cannot resume."""
    ckpt = read_checkpoint(path)
    if "optimizer" not in ckpt or "iteration" not in ckpt:
        raise CheckpointError(
            f"'{ckpt['path']}' holds only an agent's weights (no optimiser state), so training cannot resume from it."
        )
    fields = {f.name for f in dataclasses.fields(Args)}
    return Args(**{k: v for k, v in ckpt["args"].items() if k in fields}), ckpt


def check_resume(args: Args, saved: Args, ckpt: dict) -> None:
    """ValueError (one sentence) for a setting that differs from the saved run, other than the few that may."""
    may_differ = {
        "resume",
        "cuda",
        "save_interval",
        "total_timesteps",
        "batch_size",
        "minibatch_size",
        "num_iterations",
    }
    for f in dataclasses.fields(Args):
        if f.name not in may_differ and getattr(args, f.name) != getattr(saved, f.name):
            raise ValueError(
                f"--{f.name.replace('_', '-')} {getattr(args, f.name)} differs from the saved run's "
                f"{getattr(saved, f.name)}; a resumed run keeps its settings (only --total-timesteps, "
                "--save-interval and --cuda may change)."
            )
    if args.total_timesteps // (args.num_envs * args.num_steps) < ckpt["iteration"]:
        raise ValueError(f"--total-timesteps {args.total_timesteps:,} is below the {ckpt['global_step']:,} steps done.")


def prepare_run(args: Args) -> tuple:
    """(args, run_name, run_dir, checkpoint or None); creates the run folder of a new run."""
    if args.resume:
        saved, ckpt = saved_run(args.resume)
        check_resume(args, saved, ckpt)
        return args, ckpt["run_name"], os.path.dirname(os.path.abspath(ckpt["path"])), ckpt
    run_name = f"{args.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = os.path.join(args.runs_dir, run_name)
    if os.path.exists(run_dir):
        raise ValueError(f"run folder '{run_dir}' already exists; wait a second or change --exp-name.")
    make_writable_folder(run_dir, "run folder")
    return args, run_name, run_dir, None


class StopRequest:
    """First Ctrl-C (or SIGTERM, a scheduler's stop): set `requested`; the loop finishes its step, saves and
    stops. A second one: stop at once."""

    def __init__(self, message: str = "saving a checkpoint of the last completed iteration"):
        self.requested, self.message = False, message
        self.previous = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\nCtrl-C: {self.message} (press again to quit now)", file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    """12s, 5m07s or 3h05m."""
    s = int(seconds)
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


# ----------------------------------------------------------------------------- training


def ppo_losses(agent: Agent, mb: dict, args: Args, bf16: bool) -> tuple:
    """(total loss, diagnostics) of one minibatch: CleanRL's clipped PPO loss plus the attention-entropy penalty.

    mb: obs (N, 4, 84, 84) uint8, actions, logprobs, advantages, returns, values (N,). The forward
    pass runs under bf16 autocast when `bf16`; everything from the log-probabilities on is fp32.
    """
    with torch.autocast(mb["obs"].device.type, dtype=torch.bfloat16, enabled=bf16):
        _, newlogprob, entropy, newvalue, attn_ent_heads = agent.get_action_and_value(mb["obs"], mb["actions"])
    logratio = newlogprob - mb["logprobs"]
    ratio = logratio.exp()
    with torch.no_grad():  # calculate approx_kl http://joschu.net/blog/kl-approx.html
        old_approx_kl = (-logratio).mean()
        approx_kl = ((ratio - 1) - logratio).mean()
        clipfrac = ((ratio - 1.0).abs() > args.clip_coef).float().mean()

    mb_advantages = mb["advantages"]
    if args.norm_adv:
        mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)

    # clipped surrogate objective
    pg_loss1 = -mb_advantages * ratio
    pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
    pg_loss = torch.max(pg_loss1, pg_loss2).mean()

    # value loss
    newvalue = newvalue.view(-1)
    if args.clip_vloss:
        v_loss_unclipped = (newvalue - mb["returns"]) ** 2
        v_clipped = mb["values"] + torch.clamp(newvalue - mb["values"], -args.clip_coef, args.clip_coef)
        v_loss_clipped = (v_clipped - mb["returns"]) ** 2
        v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
    else:
        v_loss = 0.5 * ((newvalue - mb["returns"]) ** 2).mean()

    # attention-entropy penalty: sum over heads, mean over the minibatch
    attn_ent = attn_ent_heads.sum(1).mean()
    entropy_loss = entropy.mean()
    loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef + args.attn_coef * attn_ent
    stats = dict(value_loss=v_loss, policy_loss=pg_loss, entropy=entropy_loss, old_approx_kl=old_approx_kl)
    stats.update(approx_kl=approx_kl, clipfrac=clipfrac)
    for h in range(attn_ent_heads.shape[1]):  # nothing to log for the plain Nature CNN
        stats.update({"attention_entropy": attn_ent, f"attention_entropy_head{h}": attn_ent_heads[:, h].mean()})
    return loss, {k: v.detach() for k, v in stats.items()}


def train(args: Args) -> tuple:
    """Train; returns (checkpoint path, whether Ctrl-C stopped the run before its last iteration)."""
    args, run_name, run_dir, ckpt = prepare_run(args)
    args.batch_size = args.num_envs * args.num_steps
    args.minibatch_size = args.batch_size // args.num_minibatches
    args.num_iterations = args.total_timesteps // args.batch_size
    from torch.utils.tensorboard import SummaryWriter  # imported late: it is slow to import

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = pick_device(args.cuda)
    args.precision = resolve_precision(args.precision, device)  # recorded in the checkpoint, kept on --resume
    bf16 = args.precision == "bf16"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    envs = make_vector_env(args.env_id, args.num_envs)
    n_actions = int(envs.single_action_space.n)
    with gym.make(args.env_id) as game:
        action_names = game.unwrapped.get_action_meanings()
    agent = Agent(n_actions, args.attn_heads).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    start_iteration, global_step = 1, 0
    if ckpt is not None:
        try:
            agent.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
        except (KeyError, RuntimeError, ValueError):
            raise CheckpointError(
                f"'{ckpt['path']}' does not match the Agent architecture of ppo_attention.py."
            ) from None
        start_iteration, global_step = ckpt["iteration"] + 1, ckpt["global_step"]

    writer = SummaryWriter(run_dir, purge_step=global_step + 1 if ckpt else None)  # drop logs past the checkpoint
    writer.add_text(
        "hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in vars(args).items())
    )
    ckpt_path = os.path.join(run_dir, "run.pt")
    meta = dict(env_id=args.env_id, n_actions=n_actions, action_names=action_names, attn_heads=args.attn_heads)
    meta["run_name"] = run_name

    def save(iteration: int) -> int:
        save_checkpoint(ckpt_path, agent, optimizer, args, dict(meta, global_step=global_step, iteration=iteration))
        return iteration

    total = args.num_iterations * args.batch_size
    print(f"{'resuming' if ckpt else 'run'} {run_name} on {device}, {args.precision} update -> {run_dir}")
    print(f"{args.num_iterations} iterations of {args.batch_size} steps: {total:,} steps", flush=True)
    if total < args.total_timesteps:
        print(f"(--total-timesteps {args.total_timesteps:,} is rounded down to whole iterations)")
    if ckpt:
        print(f"continuing from step {global_step:,}" if global_step < total else "the run is already complete")

    # Rollout storage; observations stay uint8 (4x smaller than float32)
    obs = torch.zeros((args.num_steps, args.num_envs, 4, 84, 84), dtype=torch.uint8, device=device)
    actions = torch.zeros((args.num_steps, args.num_envs), dtype=torch.long, device=device)
    logprobs = torch.zeros((args.num_steps, args.num_envs), device=device)
    rewards = torch.zeros((args.num_steps, args.num_envs), device=device)
    dones = torch.zeros((args.num_steps, args.num_envs), device=device)
    values = torch.zeros((args.num_steps, args.num_envs), device=device)
    forced = np.zeros((args.num_steps, args.num_envs), dtype=bool)  # FIRE pressed by the game, not chosen

    next_obs_np, info = envs.reset(seed=args.seed + global_step)
    next_obs = torch.as_tensor(next_obs_np, device=device)
    next_done = torch.zeros(args.num_envs, device=device)
    lives = info["lives"].copy()
    fire_next = np.zeros(args.num_envs, dtype=bool)  # envs whose next step presses FIRE (a life was just lost)
    has_fire = "FIRE" in action_names
    game_score = np.zeros(args.num_envs)  # raw score of the game in progress, over all its lives
    game_length = np.zeros(args.num_envs, dtype=np.int64)
    recent_scores = []
    stop = StopRequest()
    start_time, start_step, last_print = time.time(), global_step, 0.0
    done_iteration, saved_iteration = start_iteration - 1, start_iteration - 1

    try:
        for iteration in range(start_iteration, args.num_iterations + 1):
            # Annealing the rate if instructed to do so.
            if args.anneal_lr:
                frac = 1.0 - (iteration - 1.0) / args.num_iterations
                optimizer.param_groups[0]["lr"] = frac * args.learning_rate

            for step in range(args.num_steps):
                obs[step] = next_obs
                dones[step] = next_done
                with torch.no_grad(), autocast:  # the update's precision: the ratio's two log-probs match
                    action, logprob, _, value, _ = agent.get_action_and_value(next_obs)
                action[torch.as_tensor(fire_next, device=device)] = FIRE  # CleanRL's FireResetEnv after a lost life
                forced[step] = fire_next
                values[step] = value.flatten()
                actions[step] = action
                logprobs[step] = logprob

                next_obs_np, reward, terminations, truncations, info = envs.step(action.cpu().numpy())
                rewards[step] = torch.as_tensor(np.sign(reward), device=device)  # clip rewards for learning
                next_obs = torch.as_tensor(next_obs_np, device=device)
                next_done = torch.as_tensor(terminations | truncations, device=device, dtype=torch.float32)

                # A lost life lowers the lives; a game over resets them (same-step autoreset reports the new game's).
                lost_life = terminations & (info["lives"] < lives)
                fire_next = lost_life & has_fire
                lives = info["lives"].copy()
                game_score += reward
                game_length += 1
                for i in np.flatnonzero(truncations | (terminations & ~lost_life)):
                    recent_scores = (recent_scores + [game_score[i]])[-100:]
                    writer.add_scalar("charts/episodic_return", game_score[i], global_step + step * args.num_envs)
                    writer.add_scalar("charts/episodic_length", game_length[i] * 4, global_step + step * args.num_envs)
                    game_score[i], game_length[i] = 0, 0
                if stop.requested:
                    break
            if stop.requested:  # the partial rollout is dropped: the checkpoint is the last full iteration
                break

            # bootstrap value if not done; GAE
            with torch.no_grad(), autocast:
                next_value = agent.get_value(next_obs).reshape(1, -1)
                advantages = torch.zeros_like(rewards)
                lastgaelam = 0
                for t in reversed(range(args.num_steps)):
                    if t == args.num_steps - 1:
                        nextnonterminal = 1.0 - next_done
                        nextvalues = next_value
                    else:
                        nextnonterminal = 1.0 - dones[t + 1]
                        nextvalues = values[t + 1]
                    delta = rewards[t] + args.gamma * nextvalues * nextnonterminal - values[t]
                    advantages[t] = lastgaelam = delta + args.gamma * args.gae_lambda * nextnonterminal * lastgaelam
                returns = advantages + values

            # flatten the batch
            b = dict(
                obs=obs.reshape((-1, 4, 84, 84)),
                logprobs=logprobs.reshape(-1),
                actions=actions.reshape(-1),
                advantages=advantages.reshape(-1),
                returns=returns.reshape(-1),
                values=values.reshape(-1),
            )

            # Optimizing the policy and value network, on the steps the agent chose (not the forced FIREs)
            b_inds = np.flatnonzero(~forced.reshape(-1))
            stats = []
            for epoch in range(args.update_epochs):
                np.random.shuffle(b_inds)
                for mb_inds in np.array_split(b_inds, args.num_minibatches):
                    mb_inds = torch.as_tensor(mb_inds, device=device)
                    loss, mb_stats = ppo_losses(agent, {k: v[mb_inds] for k, v in b.items()}, args, bf16)
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                    optimizer.step()
                    stats.append(mb_stats)
                if args.target_kl is not None and mb_stats["approx_kl"] > args.target_kl:
                    break
            global_step += args.batch_size
            done_iteration = iteration

            y_pred, y_true = b["values"].cpu().numpy(), b["returns"].cpu().numpy()
            var_y = np.var(y_true)
            explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y
            sps = int((global_step - start_step) / (time.time() - start_time))
            writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
            for name, value in stats[-1].items():  # the last minibatch, as CleanRL logs; clipfrac over all of them
                value = torch.stack([s[name] for s in stats]).mean() if name == "clipfrac" else value
                writer.add_scalar(f"losses/{name}", value.item(), global_step)
            writer.add_scalar("losses/explained_variance", explained_var, global_step)
            writer.add_scalar("charts/SPS", sps, global_step)

            if iteration % args.save_interval == 0 or iteration == args.num_iterations:
                saved_iteration = save(iteration)
            if time.time() - last_print >= 30 or iteration == args.num_iterations:
                last_print = time.time()
                eta = duration((total - global_step) / max(sps, 1))
                score = f"{np.mean(recent_scores):.2f}" if recent_scores else "n/a (no game finished yet)"
                entropy = f"{stats[-1]['attention_entropy'].item():.2f}" if args.attn_heads else "n/a"
                print(f"step {global_step:,}/{total:,} | {sps} steps/s | elapsed {duration(last_print - start_time)}, "
                      f"ETA {eta} | score (last {len(recent_scores)} games) {score} | attention entropy {entropy}", flush=True)  # fmt: skip
            if stop.requested:  # Ctrl-C during the update: this iteration is complete and kept
                break

        if saved_iteration < done_iteration:
            save(done_iteration)
    finally:
        stop.restore()
        envs.close()
        writer.close()
    interrupted = done_iteration < args.num_iterations
    if interrupted:
        print(f"stopped; checkpoint at step {global_step:,}: {ckpt_path}")
        print(f"continue with: python ppo_attention.py --resume {ckpt_path}")
    else:
        print(f"done: {ckpt_path}")
    return ckpt_path, interrupted


def main(argv=None) -> int:
    args = tyro.cli(Args, args=argv)
    if args.resume:  # parse again: flags not given take the saved run's values
        saved, _ = saved_run(args.resume)
        args = tyro.cli(Args, args=argv, default=dataclasses.replace(saved, resume=args.resume))
    check_args(args)
    _, interrupted = train(args)
    return 130 if interrupted else 0  # 130: the shell's code for "stopped by Ctrl-C"


if __name__ == "__main__":
    sys.exit(exit_on_bad_input(main))
