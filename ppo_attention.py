"""PPO on Atari with a region-sensitive attention module and an attention-entropy penalty.

The agent is CleanRL's Nature-CNN PPO agent with one extra block between the
convolutions and the fully connected layer: the *region-sensitive module* of
Yang et al. 2018, "Learn to Interpret Atari Agents" (arXiv 1812.11276).

    obs (4x84x84 uint8) -> conv1 -> conv2 -> conv3 (64x7x7)
        -> features: L2-normalise each of the 49 positions over its 64 channels
        -> attn_hidden: 1x1 conv 64->512, ELU
        -> attn_logits: 1x1 conv 512->H, one 7x7 map per head
        -> attention: softmax over the 49 positions, separately per head (each head sums to 1)
        -> masked = features * sum of the heads        (64x7x7)
        -> fc 3136->512, ReLU -> actor (logits), critic (value)

Every decision goes through the attention maps, so they show where the agent
looks. Left alone they tend to be diffuse; an *entropy penalty* sharpens them:

    H_h = -sum_ij A_h[i,j] log A_h[i,j]   (per head, from the logits with log_softmax)
    loss = pg_loss - ent_coef * policy_entropy + vf_coef * v_loss + attn_coef * sum_h H_h

With `--attn-heads 0` the same code trains CleanRL's plain Nature-CNN agent,
the baseline to compare against. Everything else follows CleanRL's
`ppo_atari.py` (Huang et al.), with ale-py's C++ `AtariVectorEnv` for speed.

    python ppo_attention.py --env-id BreakoutNoFrameskip-v4 --attn-coef 5e-4

The other scripts of the project import `Agent`, `make_env` and
`load_checkpoint` from here.
"""

import dataclasses
import difflib
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from typing import Optional

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


@dataclass
class Args:
    exp_name: str = "ppo_attention"
    """the name of this experiment (part of the run name)"""
    seed: int = 1
    """seed of the experiment (python, numpy, torch and the games)"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """if toggled, train on CUDA when it is available (otherwise on the CPU)"""
    runs_dir: str = "runs"
    """folder that receives `<run_name>/` with the TensorBoard events and the checkpoint `run.pt`"""
    resume: Optional[str] = None
    """path of a `run.pt` to continue: its saved settings, step, optimiser and schedule are used"""
    save_interval: int = 50
    """write the checkpoint every this many iterations (and always at the end or on Ctrl-C)"""

    # Algorithm specific arguments
    env_id: str = "BreakoutNoFrameskip-v4"
    """the id of the Atari game (e.g. BreakoutNoFrameskip-v4, ALE/Breakout-v5, PongNoFrameskip-v4)"""
    total_timesteps: int = 10000000
    """total agent steps (summed over the environments) of the experiment"""
    learning_rate: float = 2.5e-4
    """the learning rate of the optimizer"""
    num_envs: int = 8
    """the number of parallel game environments"""
    num_steps: int = 128
    """the number of steps to run in each environment per policy rollout"""
    anneal_lr: bool = True
    """toggle learning rate annealing (linear, to 0 at the end)"""
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
    batch_size: int = 0
    """the batch size (computed in runtime)"""
    minibatch_size: int = 0
    """the mini-batch size (computed in runtime)"""
    num_iterations: int = 0
    """the number of iterations (computed in runtime)"""


# ----------------------------------------------------------------------------- environments


def resolve_atari_id(env_id: str) -> dict:
    """The ale-py settings behind a gymnasium Atari id, or ValueError with close matches."""
    atari_ids = [k for k, s in gym.registry.items() if s.entry_point == "ale_py.env:AtariEnv"]
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, atari_ids, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else " Try BreakoutNoFrameskip-v4 or ALE/Breakout-v5."
        raise ValueError(f"unknown environment id '{env_id}'.{hint}")
    spec = gym.registry[env_id]
    if spec.entry_point != "ale_py.env:AtariEnv":
        raise ValueError(
            f"'{env_id}' is not an Atari game; this script trains on ale-py games such as BreakoutNoFrameskip-v4."
        )
    kw = spec.kwargs
    if kw.get("obs_type", "rgb") != "rgb" or not isinstance(kw.get("frameskip", 1), int):
        raise ValueError(f"'{env_id}' uses a random frame skip or RAM observations; use a NoFrameskip-v4 or v5 id.")
    return dict(
        game=kw["game"],
        repeat_action_probability=float(kw.get("repeat_action_probability", 0.25)),
        full_action_space=bool(kw.get("full_action_space", False)),
        max_frames=int(kw.get("max_num_frames_per_episode", 108000)),
    )


def make_vector_env(env_id: str, num_envs: int) -> AtariVectorEnv:
    """ale-py's C++ vector env with CleanRL's Atari semantics.

    No-op starts (up to 30), frame skip 4 with max-pooling, 84x84 grayscale, 4 stacked
    frames, FIRE on reset. A lost life is reported as `terminated` but the game goes
    on (CleanRL's EpisodicLifeEnv); rewards stay raw (we clip them in the loop so that
    logged returns are real game scores); SAME_STEP autoreset, as CleanRL's GAE expects.
    """
    cfg = resolve_atari_id(env_id)
    return AtariVectorEnv(
        cfg["game"],
        num_envs,
        autoreset_mode="SameStep",
        noop_max=30,
        use_fire_reset=True,
        episodic_life=False,
        life_loss_info=True,
        reward_clipping=False,
        repeat_action_probability=cfg["repeat_action_probability"],
        full_action_space=cfg["full_action_space"],
        max_num_frames_per_episode=cfg["max_frames"],
    )


class FireAndNoopReset(gym.Wrapper):
    """Reset exactly as `AtariVectorEnv` does: FIRE for one frame (where the game has it),
    then a random number of single-frame no-ops, before the first observation is taken."""

    def __init__(self, env: gym.Env, noop_max: int = 30):
        super().__init__(env)
        self.noop_max = noop_max
        self.fire = "FIRE" in env.unwrapped.get_action_meanings()

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        noops = int(self.np_random.integers(0, max(self.noop_max, 1))) - int(self.fire)
        for action in [1] * self.fire + [0] * max(noops, 0):  # action 1 is FIRE when the game has it
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


def make_env(env_id: str, seed: Optional[int] = None, noop_max: int = 30) -> gym.Env:
    """One game that feeds the agent exactly what training fed it: (4, 84, 84) uint8 stacks.

    `env.render()` returns the full-colour 210x160x3 frame of the last emulator step, for
    display. Lives are not terminal here: an episode is a whole game. `noop_max=0`
    gives the deterministic start that matches `AtariVectorEnv(noop_max=0)` pixel for pixel.
    """
    cfg = resolve_atari_id(env_id)
    env = gym.make(
        env_id,
        frameskip=1,
        repeat_action_probability=cfg["repeat_action_probability"],
        full_action_space=cfg["full_action_space"],
        render_mode="rgb_array",
    )
    env = FireAndNoopReset(env, noop_max)
    env = AtariPreprocessing(env, noop_max=0, frame_skip=4, screen_size=84, terminal_on_life_loss=False)
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

    Receptive fields in input pixels: conv1 8 px (stride 4), conv2 20 px (stride 8),
    conv3 / attention 36 px (stride 8). Unit (y, x) covers rows [y*s, y*s + r).
    """

    RECEPTIVE_FIELDS = {"conv1": (8, 4), "conv2": (20, 8), "conv3": (36, 8), "attention": (36, 8)}  # (size, stride)

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
        """Every intermediate tensor by name, for the explanation scripts.

        x: (B, 4, 84, 84) uint8 observations (divided by 255 here), or floating-point input
        already scaled to [0, 1] (what the saliency methods differentiate).
        """
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
        return self.forward(x)[1]

    def get_action_and_value(self, x, action=None):
        a = self.activations(x)
        probs = Categorical(logits=a["logits"])
        if action is None:
            action = probs.sample()
        attn_entropy = attention_entropy(a["attn_logits"])  # (B, H)
        return action, probs.log_prob(action), probs.entropy(), a["value"], attn_entropy


def attention_entropy(attn_logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each head's softmax map, from its logits. (B, H, 7, 7) -> (B, H), in nats."""
    logp = F.log_softmax(attn_logits.flatten(2), dim=-1)  # (B, H, 49)
    return -(logp.exp() * logp).sum(-1)


# ----------------------------------------------------------------------------- checkpoints


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message is one sentence for the user."""


def save_checkpoint(path: str, agent: Agent, optimizer, args: Args, meta: dict) -> None:
    """Write the checkpoint atomically: a temporary file in the same folder, then a rename."""
    ckpt = {
        "format_version": CHECKPOINT_VERSION,
        "model": agent.state_dict(),
        "optimizer": optimizer.state_dict(),
        "args": dataclasses.asdict(args),
        **meta,  # env_id, n_actions, action_names, attn_heads, global_step, iteration, run_name
    }
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str) -> dict:
    """The raw checkpoint dict (safe: weights_only), or CheckpointError."""
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
    return ckpt


def load_checkpoint(path: str, device="cpu") -> tuple:
    """A ready `Agent` in eval mode and the checkpoint's metadata (everything but the tensors)."""
    ckpt = read_checkpoint(path)
    try:
        with torch.device("meta"):  # no random init: the weights come from the file
            agent = Agent(int(ckpt["n_actions"]), int(ckpt["attn_heads"]))
        agent.load_state_dict(ckpt["model"], assign=True)
    except (KeyError, RuntimeError, TypeError, ValueError):
        raise CheckpointError(f"'{path}' does not match the Agent architecture of ppo_attention.py.") from None
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer")}
    return agent.to(device).eval(), meta


# ----------------------------------------------------------------------------- setup


def check_args(args: Args) -> None:
    """Reject bad settings with one sentence (ValueError) before anything is written."""
    resolve_atari_id(args.env_id)
    for name in ("num_envs", "num_steps", "num_minibatches", "update_epochs", "save_interval"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}.")
    batch = args.num_envs * args.num_steps
    if args.total_timesteps < batch:
        raise ValueError(
            f"--total-timesteps {args.total_timesteps} is less than one batch "
            f"(--num-envs x --num-steps = {batch}); give at least {batch}."
        )
    if batch % args.num_minibatches:
        raise ValueError(f"--num-minibatches {args.num_minibatches} does not divide the batch of {batch} steps.")
    if args.attn_coef < 0:
        raise ValueError(f"--attn-coef must be >= 0, got {args.attn_coef}.")
    if args.attn_heads < 0:
        raise ValueError(f"--attn-heads must be >= 0, got {args.attn_heads}.")
    if args.learning_rate <= 0:
        raise ValueError(f"--learning-rate must be positive, got {args.learning_rate}.")


def prepare_run(args: Args) -> tuple:
    """(args, run_name, run_dir, checkpoint or None); creates the run folder of a new run."""
    if args.resume:
        ckpt = read_checkpoint(args.resume)
        if "global_step" not in ckpt or "args" not in ckpt:
            raise CheckpointError(f"'{args.resume}' has no training state to resume.")
        saved = {f.name: ckpt["args"].get(f.name, getattr(args, f.name)) for f in dataclasses.fields(Args)}
        saved.update(cuda=args.cuda, resume=args.resume)
        args = Args(**saved)
        return args, ckpt["run_name"], os.path.dirname(os.path.abspath(args.resume)), ckpt
    run_name = f"{args.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = os.path.join(args.runs_dir, run_name)
    if os.path.exists(run_dir):
        raise ValueError(f"run folder '{run_dir}' already exists; wait a second or change --exp-name.")
    make_writable_folder(run_dir, "run folder")
    return args, run_name, run_dir, None


def make_writable_folder(path: str, what: str = "output folder") -> None:
    """Create `path` if needed and check that a file can be written there (ValueError if not)."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write_test{os.getpid()}")
        open(probe, "w").close()
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"cannot write the {what} '{path}': {e.strerror}.") from None


class StopRequest:
    """First Ctrl-C: finish the current step, save, exit. Second Ctrl-C: stop at once."""

    def __init__(self):
        self.requested = False
        self.previous_handler = signal.signal(signal.SIGINT, self.handle)

    def restore(self):
        signal.signal(signal.SIGINT, self.previous_handler)

    def handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: saving a checkpoint of the last completed iteration (press again to quit now)", flush=True)


def train(args: Args) -> tuple:
    """Train; returns (checkpoint path, whether Ctrl-C stopped the run early)."""
    args, run_name, run_dir, ckpt = prepare_run(args)
    args.batch_size = args.num_envs * args.num_steps
    args.minibatch_size = args.batch_size // args.num_minibatches
    args.num_iterations = args.total_timesteps // args.batch_size
    from torch.utils.tensorboard import SummaryWriter  # imported late: it is slow to import

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")

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
                f"'{args.resume}' does not match the Agent architecture of ppo_attention.py."
            ) from None
        start_iteration, global_step = ckpt["iteration"] + 1, ckpt["global_step"]
        print(
            f"resuming {run_name} at step {global_step:,} of {args.num_iterations * args.batch_size:,} (saved settings)"
        )

    writer = SummaryWriter(run_dir, purge_step=global_step + 1 if ckpt else None)  # drop logs past the checkpoint
    writer.add_text(
        "hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in vars(args).items())
    )
    ckpt_path = os.path.join(run_dir, "run.pt")
    meta = dict(
        env_id=args.env_id,
        n_actions=n_actions,
        action_names=action_names,
        attn_heads=args.attn_heads,
        run_name=run_name,
    )
    print(f"run {run_name} on {device}: {args.num_iterations} iterations of {args.batch_size} steps -> {run_dir}")

    # Rollout storage; observations stay uint8 (4x smaller than float32)
    obs = torch.zeros((args.num_steps, args.num_envs, 4, 84, 84), dtype=torch.uint8, device=device)
    actions = torch.zeros((args.num_steps, args.num_envs), dtype=torch.long, device=device)
    logprobs = torch.zeros((args.num_steps, args.num_envs), device=device)
    rewards = torch.zeros((args.num_steps, args.num_envs), device=device)
    dones = torch.zeros((args.num_steps, args.num_envs), device=device)
    values = torch.zeros((args.num_steps, args.num_envs), device=device)

    next_obs_np, info = envs.reset(seed=args.seed + global_step)
    next_obs = torch.as_tensor(next_obs_np, device=device)
    next_done = torch.zeros(args.num_envs, device=device)
    lives = info["lives"].copy()
    game_score = np.zeros(args.num_envs)  # raw score of the game in progress, over all its lives
    game_length = np.zeros(args.num_envs, dtype=np.int64)
    recent_scores = []
    stop = StopRequest()
    start_time, start_step, iteration = time.time(), global_step, start_iteration - 1
    attn_ent = torch.zeros(())

    for iteration in range(start_iteration, args.num_iterations + 1):
        # Annealing the rate if instructed to do so.
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / args.num_iterations
            optimizer.param_groups[0]["lr"] = frac * args.learning_rate

        for step in range(args.num_steps):
            obs[step] = next_obs
            dones[step] = next_done
            with torch.no_grad():
                action, logprob, _, value, _ = agent.get_action_and_value(next_obs)
            values[step] = value.flatten()
            actions[step] = action
            logprobs[step] = logprob

            next_obs_np, reward, terminations, truncations, info = envs.step(action.cpu().numpy())
            rewards[step] = torch.as_tensor(np.sign(reward), device=device)  # clip rewards for learning
            next_obs = torch.as_tensor(next_obs_np, device=device)
            next_done = torch.as_tensor(np.logical_or(terminations, truncations), device=device, dtype=torch.float32)

            # A game ends when it is truncated or terminated without losing a life (the new
            # game's lives are reported on that step: SAME_STEP autoreset).
            game_score += reward
            game_length += 1
            game_over = truncations | (terminations & (info["lives"] >= lives))
            lives = info["lives"].copy()
            for i in np.flatnonzero(game_over):
                recent_scores = (recent_scores + [game_score[i]])[-20:]
                writer.add_scalar("charts/episodic_return", game_score[i], global_step + step * args.num_envs)
                writer.add_scalar("charts/episodic_length", game_length[i] * 4, global_step + step * args.num_envs)
                game_score[i], game_length[i] = 0, 0
            if stop.requested:
                break
        if stop.requested:  # the partial rollout is dropped: the checkpoint is the last full iteration
            iteration -= 1
            break
        global_step += args.batch_size

        # bootstrap value if not done; GAE
        with torch.no_grad():
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
        b_obs = obs.reshape((-1, 4, 84, 84))
        b_logprobs = logprobs.reshape(-1)
        b_actions = actions.reshape(-1)
        b_advantages = advantages.reshape(-1)
        b_returns = returns.reshape(-1)
        b_values = values.reshape(-1)

        # Optimizing the policy and value network
        b_inds = np.arange(args.batch_size)
        clipfracs = []
        for epoch in range(args.update_epochs):
            np.random.shuffle(b_inds)
            for start in range(0, args.batch_size, args.minibatch_size):
                mb_inds = torch.as_tensor(b_inds[start : start + args.minibatch_size], device=device)
                _, newlogprob, entropy, newvalue, attn_ent_heads = agent.get_action_and_value(
                    b_obs[mb_inds], b_actions[mb_inds]
                )
                logratio = newlogprob - b_logprobs[mb_inds]
                ratio = logratio.exp()

                with torch.no_grad():
                    # calculate approx_kl http://joschu.net/blog/kl-approx.html
                    old_approx_kl = (-logratio).mean()
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs += [((ratio - 1.0).abs() > args.clip_coef).float().mean().item()]

                mb_advantages = b_advantages[mb_inds]
                if args.norm_adv:
                    mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)

                # clipped surrogate objective
                pg_loss1 = -mb_advantages * ratio
                pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()

                # Value loss
                newvalue = newvalue.view(-1)
                if args.clip_vloss:
                    v_loss_unclipped = (newvalue - b_returns[mb_inds]) ** 2
                    v_clipped = b_values[mb_inds] + torch.clamp(
                        newvalue - b_values[mb_inds], -args.clip_coef, args.clip_coef
                    )
                    v_loss_clipped = (v_clipped - b_returns[mb_inds]) ** 2
                    v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
                else:
                    v_loss = 0.5 * ((newvalue - b_returns[mb_inds]) ** 2).mean()

                # attention-entropy penalty: sum over heads, mean over the minibatch
                attn_ent = attn_ent_heads.sum(1).mean()
                entropy_loss = entropy.mean()
                loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef + args.attn_coef * attn_ent

                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()

            if args.target_kl is not None and approx_kl > args.target_kl:
                break

        y_pred, y_true = b_values.cpu().numpy(), b_returns.cpu().numpy()
        var_y = np.var(y_true)
        explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y

        sps = int((global_step - start_step) / (time.time() - start_time))
        writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
        writer.add_scalar("losses/value_loss", v_loss.item(), global_step)
        writer.add_scalar("losses/policy_loss", pg_loss.item(), global_step)
        writer.add_scalar("losses/entropy", entropy_loss.item(), global_step)
        writer.add_scalar("losses/old_approx_kl", old_approx_kl.item(), global_step)
        writer.add_scalar("losses/approx_kl", approx_kl.item(), global_step)
        writer.add_scalar("losses/clipfrac", np.mean(clipfracs), global_step)
        writer.add_scalar("losses/explained_variance", explained_var, global_step)
        writer.add_scalar("losses/attention_entropy", attn_ent.item(), global_step)
        for h in range(args.attn_heads):
            writer.add_scalar(f"losses/attention_entropy_head{h}", attn_ent_heads[:, h].mean().item(), global_step)
        writer.add_scalar("charts/SPS", sps, global_step)

        if iteration % args.save_interval == 0 or iteration == args.num_iterations:
            save_checkpoint(ckpt_path, agent, optimizer, args, dict(meta, global_step=global_step, iteration=iteration))
        if iteration == start_iteration or iteration % 10 == 0 or iteration == args.num_iterations:
            score = f"{np.mean(recent_scores):7.2f}" if recent_scores else "    n/a"
            print(
                f"step {global_step:>10,} | {sps:4d} steps/s | return (last {len(recent_scores):2d} games) {score} "
                f"| attention entropy {attn_ent.item():.3f}",
                flush=True,
            )

    if stop.requested:
        save_checkpoint(ckpt_path, agent, optimizer, args, dict(meta, global_step=global_step, iteration=iteration))
        print(f"stopped; checkpoint at step {global_step:,}: {ckpt_path}")
        print(f"continue with: python ppo_attention.py --resume {ckpt_path}")
    else:
        print(f"done: {ckpt_path}")
    stop.restore()
    envs.close()
    writer.close()
    return ckpt_path, stop.requested


if __name__ == "__main__":
    args = tyro.cli(Args)
    try:
        check_args(args)
        _, interrupted = train(args)
    except (ValueError, CheckpointError) as e:
        sys.exit(f"error: {e}")
    sys.exit(130 if interrupted else 0)  # 130: the shell's code for "stopped by Ctrl-C"
