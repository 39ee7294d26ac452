"""PPO on Atari with a region-sensitive attention module and an entropy penalty on its maps.

CleanRL's `ppo_atari.py` (github.com/vwxyzjn/cleanrl) with four changes, so that it reads as a diff of it:
1. `Agent`: the attention module of Yang et al. 2018 (arXiv 1812.11276) between the convolutions and the fc layer:
   every decision goes through a few 7x7 softmax maps over the screen;
2. `ppo_loss`: an entropy penalty on those maps, `attn_coef * sum_h H(A_h)`, that sharpens them;
3. `make_env`: ale-py's C++ vector env, with FIRE after a lost life (CleanRL's FireResetEnv); those forced steps are
   left out of the update, and rewards are clipped in the loop so that the logged scores are the game's;
4. checkpoints `run.pt` that resume, and that the explanation scripts load (agents.py).
It re-implements rl-attention (AI Safety Camp 3: Nikulin, Kosch, Steuer, Cunningham 2019; github.com/dniku/rl-attention).
`--attn-heads 0` trains CleanRL's plain Nature-CNN agent through the same code, as the baseline.
GAE and the loss are the functions `compute_gae` and `ppo_loss`, with CleanRL's lines, so that tests can check them.

    python ppo_attention.py --env-id BreakoutNoFrameskip-v4 --attn-coef 5e-4
"""

import contextlib
import dataclasses
import os
import pathlib
import random
import signal
import sys
import time
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
import tyro
from ale_py.vector_env import AtariVectorEnv
from torch.distributions.categorical import Categorical

from atari_env import action_names, resolve_atari_id
from cli import CHECKPOINT_VERSION, StopRequest, UsageError, read_checkpoint

BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # in /proc/cpuinfo: a CPU computes bf16 natively (x86, Arm)


@dataclass
class Args:
    exp_name: str = "ppo_attention"
    """the name of this experiment (part of the run name)"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """if toggled, cuda will be enabled by default"""
    runs_dir: str = "runs"
    """folder that receives `<run_name>/` with the TensorBoard events and the checkpoint `run.pt`"""
    resume: Optional[str] = None
    """a run.pt or run folder to continue with its settings (--total-timesteps, --save-interval, --cuda may change)"""
    save_interval: int = 50
    """write the checkpoint every this many iterations (and always at the end or on Ctrl-C)"""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """the network's passes in bf16 (torch.autocast; weights and losses stay fp32) or fp32; auto: bf16 where native"""

    # Algorithm specific arguments
    env_id: str = "BreakoutNoFrameskip-v4"
    """the id of the Atari game (e.g. BreakoutNoFrameskip-v4, ALE/Breakout-v5, PongNoFrameskip-v4)"""
    total_timesteps: int = 10000000
    """total timesteps of the experiments (agent steps over all envs, rounded down to whole iterations)"""
    learning_rate: float = 2.5e-4
    """the learning rate of the optimizer"""
    num_envs: int = 8
    """the number of parallel game environments"""
    num_steps: int = 128
    """the number of steps to run in each environment per policy rollout"""
    anneal_lr: bool = True
    """Toggle learning rate annealing for policy and value networks"""
    gamma: float = 0.99
    """the discount factor gamma"""
    gae_lambda: float = 0.95
    """the lambda for the general advantage estimation"""
    num_minibatches: int = 4
    """the number of mini-batches"""
    update_epochs: int = 4
    """the K epochs to update the policy"""
    norm_adv: bool = True
    """Toggles advantages normalization"""
    clip_coef: float = 0.1
    """the surrogate clipping coefficient"""
    clip_vloss: bool = True
    """Toggles whether or not to use a clipped loss for the value function, as per the paper."""
    ent_coef: float = 0.01
    """coefficient of the entropy"""
    vf_coef: float = 0.5
    """coefficient of the value function"""
    max_grad_norm: float = 0.5
    """the maximum norm for the gradient clipping"""
    target_kl: Optional[float] = None
    """the target KL divergence threshold"""
    attn_heads: int = 2
    """number of attention heads; 0 trains the plain Nature-CNN agent (no attention module)"""
    attn_coef: float = 5e-4
    """coefficient of the attention-entropy penalty (0 disables it; values >= 1e-2 tend to stop learning)"""

    # to be filled in runtime (Suppress: no command-line flag)
    batch_size: tyro.conf.Suppress[int] = 0
    """the batch size (computed in runtime)"""
    num_iterations: tyro.conf.Suppress[int] = 0
    """the number of iterations (computed in runtime)"""


def make_env(env_id: str, num_envs: int) -> AtariVectorEnv:
    """ale-py's C++ vector env with CleanRL's Atari wrappers built in: up to 30 no-op starts, FIRE on reset, frame
    skip 4 with max-pool, 84x84 grayscale, 4 stacked frames (zeros before the first). A lost life is `terminated`
    but the game goes on (EpisodicLifeEnv); rewards stay raw (clipped in the loop); same-step autoreset for GAE."""
    game, settings = resolve_atari_id(env_id)
    return AtariVectorEnv(
        game, num_envs, autoreset_mode="SameStep", noop_max=30, life_loss_info=True, reward_clipping=False, **settings
    )


def layer_init(layer, std=np.sqrt(2), bias_const=0.0):
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    """Nature CNN + region-sensitive attention (Yang et al. 2018) + actor and critic. Input: (B, 4, 84, 84) uint8
    frames, or float frames / 255 in [0, 1]. Unit (y, x) of a layer with receptive field (size r, stride s) sees
    input rows [y*s, y*s + r) and columns [x*s, x*s + r)."""

    RECEPTIVE_FIELDS = {"conv1": (8, 4), "conv2": (20, 8), "conv3": (36, 8), "attention": (36, 8)}  # (r, s)

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

    def activations(self, x: torch.Tensor, check: bool = True) -> dict:
        """Every intermediate tensor by name. ValueError for input outside the contract (float frames in 0..255
        would be 255 times too bright); check=False lets float input leave [0, 1] (saliency's noisy copies)."""
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        elif check and (not x.is_floating_point() or bool(((x < 0) | (x > 1)).any())):
            raise ValueError(f"the agent takes uint8 or float frames / 255 in [0, 1], not {x.dtype} up to {x.max():g}.")
        out, B = {}, x.shape[0]
        x = x.contiguous(memory_format=torch.channels_last)
        out["conv1"] = F.relu(self.conv1(x))  # (B, 32, 20, 20)
        out["conv2"] = F.relu(self.conv2(out["conv1"]))  # (B, 64, 9, 9)
        out["conv3"] = F.relu(self.conv3(out["conv2"]))  # (B, 64, 7, 7)
        if self.attn_heads > 0:
            out["features"] = F.normalize(out["conv3"], dim=1)  # unit L2 norm over channels at each place
            out["attn_hidden"] = F.elu(self.attn_hidden(out["features"]))  # (B, 512, 7, 7)
            out["attn_logits"] = self.attn_logits(out["attn_hidden"])  # (B, H, 7, 7)
            out["attention"] = out["attn_logits"].flatten(2).softmax(-1).view(B, -1, 7, 7)  # softmax over 49 places
            out["masked"] = out["features"] * out["attention"].sum(1, keepdim=True)  # (B, 64, 7, 7)
        else:  # plain Nature CNN
            out["features"] = out["masked"] = out["conv3"]
            out["attn_logits"] = out["attention"] = x.new_zeros(B, 0, 7, 7)
        out["fc"] = F.relu(self.fc(out["masked"].flatten(1)))  # (B, 3136) -> (B, 512)
        out["logits"], out["value"] = self.actor(out["fc"]), self.critic(out["fc"])  # (B, A), (B, 1)
        return out

    def forward(self, x):  # (policy logits (B, A), value (B, 1), attention maps (B, H, 7, 7))
        out = self.activations(x)
        return out["logits"], out["value"], out["attention"]

    def get_value(self, x):
        return self.activations(x)["value"].float()

    def get_action_and_value(self, x, action=None):  # fp32 outputs, even under bf16 autocast: they enter the losses
        out = self.activations(x)
        probs = Categorical(logits=out["logits"].float())
        if action is None:
            action = probs.sample()
        attn_entropy = attention_entropy(out["attn_logits"].float())  # (B, H)
        return action, probs.log_prob(action), probs.entropy(), out["value"].float(), attn_entropy


def attention_entropy(attn_logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each head's softmax map, from its logits. (B, H, 7, 7) -> (B, H), in nats (at most ln 49 each)."""
    logp = F.log_softmax(attn_logits.flatten(2), dim=-1)  # (B, H, 49)
    return -(logp.exp() * logp).sum(-1)


def compute_gae(rewards, values, dones, next_value, next_done, args):
    """GAE (Schulman et al. 2016), CleanRL's lines: (advantages, returns), both (num_steps, num_envs). dones[t] = 1
    when obs[t] starts an episode (step t - 1 lost a life or ended the game); next_*: the bootstrap."""
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
    return advantages, returns


def ppo_loss(newlogprob, entropy, newvalue, attn_entropy, b_logprobs, b_advantages, b_returns, b_values, mb_inds, args):
    """(loss, diagnostics) of minibatch mb_inds of the batch b_*, CleanRL's lines plus the attention-entropy penalty.
    newlogprob, entropy, newvalue, attn_entropy (N, H): the network's outputs on the minibatch now."""
    logratio = newlogprob - b_logprobs[mb_inds]
    ratio = logratio.exp()

    with torch.no_grad():
        # calculate approx_kl http://joschu.net/blog/kl-approx.html
        old_approx_kl = (-logratio).mean()
        approx_kl = ((ratio - 1) - logratio).mean()
        clipfrac = ((ratio - 1.0).abs() > args.clip_coef).float().mean()

    mb_advantages = b_advantages[mb_inds]
    if args.norm_adv:
        mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)

    # Policy loss
    pg_loss1 = -mb_advantages * ratio
    pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
    pg_loss = torch.max(pg_loss1, pg_loss2).mean()

    # Value loss
    newvalue = newvalue.view(-1)
    if args.clip_vloss:
        v_loss_unclipped = (newvalue - b_returns[mb_inds]) ** 2
        v_clipped = b_values[mb_inds] + torch.clamp(
            newvalue - b_values[mb_inds],
            -args.clip_coef,
            args.clip_coef,
        )
        v_loss_clipped = (v_clipped - b_returns[mb_inds]) ** 2
        v_loss_max = torch.max(v_loss_unclipped, v_loss_clipped)
        v_loss = 0.5 * v_loss_max.mean()
    else:
        v_loss = 0.5 * ((newvalue - b_returns[mb_inds]) ** 2).mean()

    entropy_loss = entropy.mean()
    attn_loss = attn_entropy.sum(1).mean()  # the attention-entropy penalty: sum over heads, mean over the minibatch
    loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef + args.attn_coef * attn_loss

    stats = dict(value_loss=v_loss, policy_loss=pg_loss, entropy=entropy_loss, old_approx_kl=old_approx_kl)
    stats.update(approx_kl=approx_kl, clipfrac=clipfrac)
    if attn_entropy.shape[1]:  # nothing to log for the plain Nature CNN
        stats |= {f"attention_entropy_head{h}": e for h, e in enumerate(attn_entropy.mean(0))}
        stats["attention_entropy"] = attn_loss
    return loss, {k: v.detach() for k, v in stats.items()}


def save_checkpoint(path: str, agent: Agent, optimizer, args: Args, meta: dict) -> None:
    """Write the checkpoint atomically (a temporary file, then a rename); it loads with `weights_only=True`. meta:
    env_id, n_actions, action_names, attn_heads, run_name, global_step, iteration. The demo agents lack "optimizer"."""
    ckpt = {"format_version": CHECKPOINT_VERSION, "model": agent.state_dict(), "optimizer": optimizer.state_dict()}
    ckpt |= {"args": dataclasses.asdict(args), **meta}
    torch.save(ckpt, f"{path}.tmp")  # a failed write leaves the previous checkpoint as it was
    os.replace(f"{path}.tmp", path)


def resumed_args(argv, resume: str) -> Args:
    """The command line parsed over the saved run's settings; UsageError for a flag that changes one of them."""
    ckpt = read_checkpoint(resume)
    if "optimizer" not in ckpt:
        raise UsageError(f"'{ckpt['path']}' holds only an agent's weights (no optimiser state): it cannot resume.")
    try:  # a file edited by hand, or written by another version of the Agent
        Agent(ckpt["n_actions"], ckpt["attn_heads"]).load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError):
        raise UsageError(f"'{ckpt['path']}' does not match the Agent architecture of ppo_attention.py.") from None
    saved = Args(**{f.name: ckpt["args"][f.name] for f in dataclasses.fields(Args) if f.name in ckpt["args"]})
    # --cuda belongs to this machine, not to the run: a run saved on a CPU uses the GPU where it resumes on one
    args = tyro.cli(Args, args=argv, default=dataclasses.replace(saved, resume=resume, cuda=Args.cuda))
    free = ("resume", "cuda", "save_interval", "total_timesteps", "num_iterations")  # may change on --resume
    for name, value in vars(args).items():
        if value != getattr(saved, name) and name not in free:
            flag, old = f"--{name.replace('_', '-')} {value}", getattr(saved, name)
            raise UsageError(f"{flag} differs from the saved run's {old}; a resumed run keeps its settings.")
    return args


def start_run(args: Args) -> tuple:
    """(run_name, run_dir, checkpoint or None): the saved run of --resume, or a new folder in --runs-dir."""
    if args.resume:  # checked by resumed_args
        ckpt = read_checkpoint(args.resume)
        return ckpt["run_name"], os.path.dirname(os.path.abspath(ckpt["path"])), ckpt
    run_name = f"{args.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    try:
        os.makedirs(run_dir := os.path.join(args.runs_dir, run_name))
    except OSError as e:
        raise UsageError(f"cannot make the run folder '{run_dir}': {e.strerror}.") from None
    return run_name, run_dir, None


def resolve_precision(requested: str, device: torch.device) -> str:
    """fp32 or bf16. auto: bf16 where the device computes it natively (a GPU that has it, a CPU with one of the
    BF16_CPU_FLAGS); bf16 asked for elsewhere (emulated, slow) falls back to fp32, with one sentence."""
    flags = set(pathlib.Path("/proc/cpuinfo").read_text().split()) if os.path.isfile("/proc/cpuinfo") else set()
    native = torch.cuda.is_bf16_supported() if device.type == "cuda" else bool(flags & BF16_CPU_FLAGS)
    if requested == "bf16" and not native:
        print(f"bf16 is not supported natively on this {device.type.upper()}; training in fp32 instead.")
    return "bf16" if requested != "fp32" and native else "fp32"


def check_args(args: Args) -> None:  # bad settings: one sentence (UsageError), before anything is written
    resolve_atari_id(args.env_id)
    for name in ("num_envs", "num_steps", "num_minibatches", "update_epochs", "save_interval", "total_timesteps"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}.")
    if not args.num_minibatches <= args.num_envs * args.num_steps <= args.total_timesteps:
        raise UsageError("--total-timesteps must hold an iteration (num-envs x num-steps), and that --num-minibatches.")
    if min(args.attn_coef, args.attn_heads) < 0 or args.learning_rate <= 0:
        raise UsageError("--attn-coef and --attn-heads must be >= 0, and --learning-rate > 0.")


def train(args: Args) -> tuple:
    """Train a new run, or continue `args.resume`; returns (checkpoint path, whether Ctrl-C stopped it early)."""
    args.batch_size = int(args.num_envs * args.num_steps)
    args.num_iterations = args.total_timesteps // args.batch_size
    run_name, run_dir, ckpt = start_run(args)
    from torch.utils.tensorboard import SummaryWriter  # imported here: it is slow to import, and only training writes

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic

    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    args.precision = resolve_precision(args.precision, device)  # recorded in the checkpoint, kept on --resume
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    writer = SummaryWriter(run_dir, purge_step=ckpt["global_step"] + 1 if ckpt else None)  # drop logs past the ckpt
    writer.add_text(
        "hyperparameters",
        "|param|value|\n|-|-|\n%s" % ("\n".join([f"|{key}|{value}|" for key, value in vars(args).items()])),  # noqa: UP031
    )

    # env setup
    envs = make_env(args.env_id, args.num_envs)
    names = action_names(args.env_id)
    fire = names.index("FIRE") if "FIRE" in names else None  # action 0 in a few games

    agent = Agent(envs.single_action_space.n, args.attn_heads).to(device).to(memory_format=torch.channels_last)
    optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    if ckpt:
        agent.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])

    # ALGO Logic: Storage setup (the observations stay uint8: 4 times smaller than float32)
    obs = torch.zeros((args.num_steps, args.num_envs) + envs.single_observation_space.shape, dtype=torch.uint8).to(
        device
    )
    actions = torch.zeros((args.num_steps, args.num_envs) + envs.single_action_space.shape).to(device)
    logprobs = torch.zeros((args.num_steps, args.num_envs)).to(device)
    rewards = torch.zeros((args.num_steps, args.num_envs)).to(device)
    dones = torch.zeros((args.num_steps, args.num_envs)).to(device)
    values = torch.zeros((args.num_steps, args.num_envs)).to(device)
    forced = np.zeros((args.num_steps, args.num_envs), dtype=bool)  # FIRE pressed after a lost life, not chosen

    # TRY NOT TO MODIFY: start the game
    global_step = ckpt["global_step"] if ckpt else 0
    start_time, start_step = time.time(), global_step
    next_obs, infos = envs.reset(seed=args.seed + global_step)
    next_obs = torch.as_tensor(next_obs).to(device)
    next_done = torch.zeros(args.num_envs).to(device)
    lives, fire_next = infos["lives"].copy(), np.zeros(args.num_envs, dtype=bool)  # fire_next: a life was just lost
    game_score, game_length = np.zeros(args.num_envs), np.zeros(args.num_envs, dtype=np.int64)  # over all lives
    meta = dict(run_name=run_name, env_id=args.env_id, action_names=names, n_actions=len(names))
    meta["attn_heads"], ckpt_path, recent_scores = args.attn_heads, f"{run_dir}/run.pt", []
    total, last_print = args.num_iterations * args.batch_size, 0.0
    print(f"{'resuming' if ckpt else 'run'} {run_name} ({device} {args.precision}): {global_step:,}/{total:,} steps")

    stop = StopRequest("finishing this iteration, then saving it")
    with stop, contextlib.closing(envs), contextlib.closing(writer):  # on leaving: closed, Ctrl-C's handler put back
        for iteration in range(ckpt["iteration"] + 1 if ckpt else 1, args.num_iterations + 1):
            # Annealing the rate if instructed to do so.
            if args.anneal_lr:
                frac = 1.0 - (iteration - 1.0) / args.num_iterations
                lrnow = frac * args.learning_rate
                optimizer.param_groups[0]["lr"] = lrnow

            for step in range(0, args.num_steps):
                global_step += args.num_envs
                obs[step] = next_obs
                dones[step] = next_done

                # ALGO LOGIC: action logic
                with torch.no_grad(), autocast:  # the update's precision: the ratio's two log-probs match
                    action, logprob, _, value, _ = agent.get_action_and_value(next_obs)
                    values[step] = value.flatten()
                forced[step] = fire_next  # after a lost life the game needs FIRE (CleanRL's FireResetEnv)
                if fire_next.any():
                    action[torch.as_tensor(fire_next).to(device)] = fire
                actions[step] = action
                logprobs[step] = logprob

                # TRY NOT TO MODIFY: execute the game and log data.
                next_obs, reward, terminations, truncations, infos = envs.step(action.cpu().numpy())
                next_done = np.logical_or(terminations, truncations)
                rewards[step] = torch.tensor(np.sign(reward)).to(device).view(-1)  # clipped for learning only
                next_obs, next_done = torch.as_tensor(next_obs).to(device), torch.Tensor(next_done).to(device)

                lost_life = terminations & (infos["lives"] < lives)  # a game over resets the lives instead
                fire_next, lives = lost_life & (fire is not None), infos["lives"].copy()
                game_score, game_length = game_score + reward, game_length + 1  # the raw game score, all lives
                for i in np.flatnonzero(truncations | (terminations & ~lost_life)):  # a game is over
                    recent_scores = (recent_scores + [game_score[i]])[-100:]
                    writer.add_scalar("charts/episodic_return", game_score[i], global_step)
                    writer.add_scalar("charts/episodic_length", game_length[i] * 4, global_step)  # in frames
                    game_score[i], game_length[i] = 0, 0

            # bootstrap value if not done
            with torch.no_grad(), autocast:
                next_value = agent.get_value(next_obs).reshape(1, -1)
            advantages, returns = compute_gae(rewards, values, dones, next_value, next_done, args)

            # flatten the batch
            b_obs = obs.reshape((-1,) + envs.single_observation_space.shape)
            b_logprobs = logprobs.reshape(-1)
            b_actions = actions.reshape((-1,) + envs.single_action_space.shape)
            b_advantages = advantages.reshape(-1)
            b_returns = returns.reshape(-1)
            b_values = values.reshape(-1)

            # Optimizing the policy and value network
            b_inds = np.flatnonzero(~forced.reshape(-1))  # not the forced FIREs: the agent did not choose them
            clipfracs = []
            for epoch in range(args.update_epochs):
                np.random.shuffle(b_inds)
                for mb_inds in np.array_split(b_inds, args.num_minibatches):
                    mb_inds = torch.as_tensor(mb_inds).to(device)
                    with autocast:
                        _, newlogprob, entropy, newvalue, attn_entropy = agent.get_action_and_value(
                            b_obs[mb_inds], b_actions.long()[mb_inds]
                        )
                    loss, stats = ppo_loss(
                        newlogprob, entropy, newvalue, attn_entropy, b_logprobs, b_advantages, b_returns, b_values,
                        mb_inds, args,
                    )  # fmt: skip
                    clipfracs += [stats.pop("clipfrac").item()]

                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                    optimizer.step()

                if args.target_kl is not None and stats["approx_kl"] > args.target_kl:
                    break

            y_pred, y_true = b_values.cpu().numpy(), b_returns.cpu().numpy()
            var_y = np.var(y_true)
            explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y

            # TRY NOT TO MODIFY: record rewards for plotting purposes
            writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
            for name, value in stats.items():  # the last minibatch's, as CleanRL logs them
                writer.add_scalar(f"losses/{name}", value.item(), global_step)
            writer.add_scalar("losses/clipfrac", np.mean(clipfracs), global_step)
            writer.add_scalar("losses/explained_variance", explained_var, global_step)
            sps = int((global_step - start_step) / (time.time() - start_time))
            writer.add_scalar("charts/SPS", sps, global_step)

            meta.update(global_step=global_step, iteration=iteration)
            if iteration % args.save_interval == 0 or iteration == args.num_iterations or stop.requested:
                save_checkpoint(ckpt_path, agent, optimizer, args, meta)
            if time.time() - last_print >= 30 or iteration == args.num_iterations or stop.requested:
                last_print = time.time()
                print_progress(global_step, total, sps, last_print - start_time, recent_scores, stats)
            if stop.requested:
                break

    interrupted = stop.requested and global_step < total
    print(f"stopped; continue: python ppo_attention.py --resume {ckpt_path}" if interrupted else f"done: {ckpt_path}")
    return ckpt_path, interrupted


def print_progress(global_step: int, total: int, sps: int, seconds: float, recent_scores: list, stats: dict) -> None:
    """One line every 30 s: steps, speed, time and ETA, the mean game score of the last 100 games, attention entropy."""
    score = (
        f"(last {len(recent_scores)} games) {np.mean(recent_scores):.2f}"
        if recent_scores
        else "n/a (no game finished yet)"
    )
    entropy = stats.get("attention_entropy", torch.tensor(float("nan"))).item()
    print(
        f"step {global_step:,}/{total:,} | {sps} steps/s | {seconds / 60:.1f} min, ETA {(total - global_step) / sps / 60:.0f}"
        f" min | score {score} | attention entropy {entropy:.2f}"
    )


def main(argv=None) -> int:
    args = tyro.cli(Args, args=argv)
    args = resumed_args(argv, args.resume) if args.resume else args  # --resume: parse over the saved settings
    check_args(args)
    return 130 if train(args)[1] else 0  # 130: the shell's code for "stopped by Ctrl-C"


def exit_on_ctrl_c(signum, frame):
    """Ctrl-C outside the training loop (before it starts, or after its save): exit 130 at once, with no traceback;
    more presses change nothing. Inside the loop, StopRequest finishes the iteration and saves first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise SystemExit(130)


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # each progress line reaches a log file at once
    signal.signal(signal.SIGINT, exit_on_ctrl_c)  # the loop's StopRequest takes over while it runs, then puts it back
    try:
        code = main()
    except UsageError as e:  # bad input: one sentence; any other exception is a bug and keeps its traceback
        sys.exit(f"error: {e}")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # saved and done: a late Ctrl-C changes nothing
    sys.exit(code)
