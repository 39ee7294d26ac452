"""Every agent the explanation scripts explain, loaded as this project's `Agent`, and the policy it plays.

- `load_checkpoint(path)`: a file -> a ready agent in eval mode and its metadata. It reads this project's `run.pt`
  (ppo_attention.py) and agents trained elsewhere: CleanRL's ppo_atari.py and dqn_atari.py state dicts and
  Stable-Baselines3's PPO, A2C and DQN zips. Weights load with `weights_only=True`, so a shared file cannot run code;
  of SB3's JSON only plain fields are read, never what SB3 cloudpickled.
- `QValueAgent`: a DQN, whose outputs are Q-values; it plays epsilon-greedily (`action_probabilities`).

CleanRL and Stable-Baselines3 train Atari agents with the Nature CNN, which is this project's Agent with
attn_heads=0: their weights go into its layers, and atari_env.make_env feeds each agent what its trainer's wrappers
fed it (`meta["env_options"]`).

    from agents import load_checkpoint
    agent, meta = load_checkpoint("checkpoints/breakout_coef0.pt")
"""

import io
import json
import os
import re
import zipfile
from typing import Optional

import torch
import torch.nn.functional as F

from atari_env import ENV_OPTIONS, action_names, game_ids, resolve_atari_id
from cli import UsageError, read_checkpoint
from ppo_attention import Agent


def load_checkpoint(path: str, device="cpu", env_id: Optional[str] = None) -> tuple:
    """A ready agent in eval mode, its weights frozen, and its metadata, or UsageError with one sentence.

    path: this project's `run.pt` (or its run folder), a CleanRL state dict or a Stable-Baselines3 zip (see "agents
    trained elsewhere" below). env_id: the game of an agent whose file does not name it. meta holds env_id,
    action_names, n_actions, attn_heads, run_name, path, outputs ("policy", or "q_values" for a DQN, with the
    epsilon of its epsilon-greedy play), source (what trained it), env_options (make_env's settings of what it saw
    in training) and, from this project's checkpoints, the rest of the file but the tensors (args, global_step, ...).
    """
    if os.path.isfile(path) and zipfile.is_zipfile(path) and not is_torch_zip(path):
        agent, meta = load_sb3(path, env_id)
    elif cleanrl_names(state := torch_file(path)):
        agent, meta = load_cleanrl(path, state, env_id)
    elif isinstance(state, dict) and "format_version" not in state:
        raise UsageError(f"'{path}' is not a checkpoint written by ppo_attention.py, nor a CleanRL or SB3 agent.")
    else:
        agent, meta = load_ppo_attention(path, env_id)
    # the scripts explain, they never train: frozen weights spare every gradient map the weights' gradients
    return agent.to(device).eval().requires_grad_(False), meta


def is_torch_zip(path: str) -> bool:
    """torch.save writes a zip file too, with a `<name>/data.pkl` in it."""
    with zipfile.ZipFile(path) as z:
        return any(name.endswith("data.pkl") for name in z.namelist())


def torch_file(path: str):
    """What a PyTorch file holds, loaded with weights_only=True; None for a folder or a file that does not load."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True) if os.path.isfile(path) else None
    except Exception:  # read_checkpoint says what is wrong with it, in one sentence
        return None


def load_ppo_attention(path: str, env_id: Optional[str]) -> tuple:
    """A checkpoint of ppo_attention.py (see its `read_checkpoint`); it names its game, so --env-id can only agree."""
    ckpt = read_checkpoint(path)
    if env_id and env_id != ckpt["env_id"]:
        raise UsageError(f"'{ckpt['path']}' plays {ckpt['env_id']}, not --env-id {env_id}; leave --env-id out.")
    try:
        with torch.device("meta"):  # no random init: the weights come from the file
            agent = Agent(int(ckpt["n_actions"]), int(ckpt["attn_heads"]))
        agent.load_state_dict(ckpt["model"], assign=True)
    except (KeyError, RuntimeError, TypeError, ValueError):
        raise UsageError(f"'{ckpt['path']}' does not match the Agent architecture of ppo_attention.py.") from None
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer")}
    return agent, meta | dict(outputs="policy", source="ppo_attention.py", env_options=ENV_OPTIONS["ppo_attention"])


# ----------------------------------------------------------------------------- agents trained elsewhere


class QValueAgent(Agent):
    """A DQN's Q-network in the Agent's layers: `logits` are the Q-values Q(s, a), and `value` is max_a Q(s, a),
    the value of acting greedily (a DQN has no critic: `critic` holds zeros, and its output is replaced).
    The play loop acts epsilon-greedily: a uniformly random action with probability `epsilon`, else the greedy one."""

    def __init__(self, n_actions: int, epsilon: float):
        super().__init__(n_actions, attn_heads=0)
        self.epsilon = epsilon

    def activations(self, x: torch.Tensor, check: bool = True) -> dict:
        out = super().activations(x, check)
        out["value"] = out["logits"].amax(1, keepdim=True)
        return out


CLEANRL = dict(conv1="network.0", conv2="network.2", conv3="network.4", fc="network.7")  # nn.Sequential's indices


SB3 = dict(conv1="cnn.0", conv2="cnn.2", conv3="cnn.4", fc="linear.0")  # SB3's NatureCNN, in its features_extractor


LAYOUTS = {  # where each of the Agent's layers is in a file: {Agent layer: the file's layer}
    "CleanRL ppo_atari.py": CLEANRL | dict(actor="actor", critic="critic"),
    "CleanRL dqn_atari.py": CLEANRL | dict(actor="network.9"),
    "SB3 PPO": {k: f"features_extractor.{v}" for k, v in SB3.items()} | dict(actor="action_net", critic="value_net"),
    "SB3 A2C": {k: f"features_extractor.{v}" for k, v in SB3.items()} | dict(actor="action_net", critic="value_net"),
    "SB3 DQN": {k: f"q_net.features_extractor.{v}" for k, v in SB3.items()} | dict(actor="q_net.q_net.0"),
}


SB3_COPIES = ("pi_features_extractor.", "vf_features_extractor.", "q_net_target.")  # not read (see load_sb3)


CLEANRL_EPSILON = 0.01  # dqn_atari.py's final exploration rate, with which it evaluates the model it saves


def nature_cnn(path: str, state: dict, source: str, epsilon: Optional[float] = None, scale: float = 1.0) -> Agent:
    """An Agent without attention (a QValueAgent when `epsilon` is given) holding the weights of `state`, laid out
    as LAYOUTS[source] says; UsageError (one sentence) for a missing layer, a layer the Nature CNN has not, or
    another shape. scale: 255 for a network that read frames in 0..255 (conv1's weights x 255: the Agent reads
    them / 255)."""
    names = {f"{layer}.{p}" for layer in LAYOUTS[source].values() for p in ("weight", "bias")}
    if missing := sorted(names - set(state)):
        more = f" and {len(missing) - 2} more" if len(missing) > 2 else ""
        raise UsageError(f"'{path}' lacks {', '.join(missing[:2])}{more}: it is not a whole {source} network.")
    if extra := sorted(k for k in set(state) - names if not k.startswith(SB3_COPIES)):
        raise UsageError(f"'{path}' has layers the Nature CNN of {source} has not ({', '.join(extra[:2])}).")
    weights = {f"{ours}.{p}": state[f"{theirs}.{p}"].float() for ours, theirs in LAYOUTS[source].items() for p in ("weight", "bias")}  # fmt: skip
    weights["conv1.weight"] = weights["conv1.weight"] * scale
    if epsilon is not None:
        weights |= {"critic.weight": torch.zeros(1, 512), "critic.bias": torch.zeros(1)}
    n_actions = len(weights["actor.bias"])
    try:
        with torch.device("meta"):  # no random init: the weights come from the file
            agent = Agent(n_actions, attn_heads=0) if epsilon is None else QValueAgent(n_actions, epsilon)
        agent.load_state_dict(weights, assign=True)
    except RuntimeError:
        raise UsageError(
            f"'{path}' is not the Nature CNN (4 stacked 84x84 frames, convolutions of 32, 64 and 64 channels, 512 "
            "units) of this project's Agent: its layers have other shapes."
        ) from None
    return agent


def cleanrl_names(state) -> bool:
    return isinstance(state, dict) and any(str(k).startswith(("network.", "actor.", "critic.")) for k in state)


def load_cleanrl(path: str, state: dict, env_id: Optional[str]) -> tuple:
    """A state dict of CleanRL's ppo_atari.py `Agent` (network.0/2/4/7, actor, critic; its users save
    `agent.state_dict()`) or of dqn_atari.py's `QNetwork` (network.0 to network.9, no actor or critic; `--save-model`
    writes runs/<run_name>/<exp_name>.cleanrl_model). The keys tell the two apart, not the file's name: CleanRL's
    other scripts save PPO agents as .cleanrl_model too. Both compute network(x / 255), as the Agent does."""
    heads = any(str(k).startswith(("actor.", "critic.")) for k in state)
    dqn = not heads and any(str(k).startswith("network.9.") for k in state)
    source = "CleanRL dqn_atari.py" if dqn else "CleanRL ppo_atari.py"
    agent = nature_cnn(path, state, source, epsilon=CLEANRL_EPSILON if dqn else None)
    env_id, names = game_of(path, env_id, agent.n_actions, source)
    folder = os.path.basename(os.path.dirname(os.path.abspath(path)))  # dqn_atari.py's runs/<run_name>/
    run_name = folder if folder.startswith(f"{env_id}__") else os.path.splitext(os.path.basename(path))[0]
    return agent, elsewhere_meta(path, agent, env_id, names, run_name, source, "cleanrl")


def plain(entry):
    """A value of SB3's `data` JSON without unpickling: as it is where SB3 stored it as JSON; where SB3 cloudpickled it
    (":serialized:"), the plain fields SB3 wrote beside the blob: an object's first-level attributes or a dict's items,
    as JSON, or as their str() where they were not JSON (so a str there may have been another Python value)."""
    if isinstance(entry, dict) and ":serialized:" in entry:
        return {k: v for k, v in entry.items() if k not in (":type:", ":serialized:")}
    return entry


def load_sb3(path: str, env_id: Optional[str]) -> tuple:
    """A Stable-Baselines3 zip of PPO or A2C with `ActorCriticCnnPolicy`, or of DQN with its `CnnPolicy`.

    The weights come from `policy.pth` (weights_only=True): the shared CNN and the heads; the copies of the CNN
    (pi_, vf_features_extractor) must equal it, and DQN's target network is not read. Of the `data` JSON only
    plain fields are read (see `plain`): the `observation_space`'s `_shape` (a list) and `dtype` ("uint8"),
    `policy_kwargs`' `normalize_images` (true or false), `num_timesteps`, `exploration_final_eps`, and whether
    there is a `clip_range` (PPO, not A2C). What SB3 cloudpickled (`:serialized:`: Python objects, which could run
    code) is never unpickled; an agent whose fields cannot be read so is refused. (The space's bounds need no check:
    SB3's NatureCNN refuses to normalize images that are not 0..255.)
    """
    with zipfile.ZipFile(path) as z:
        if not {"data", "policy.pth"} <= set(z.namelist()):
            raise UsageError(f"'{path}' is a zip file but not a Stable-Baselines3 agent (no data and policy.pth).")
        try:
            data = json.loads(z.read("data"))
            state = torch.load(io.BytesIO(z.read("policy.pth")), map_location="cpu", weights_only=True)
        except Exception:
            raise UsageError(
                f"'{path}' has an SB3 data or policy.pth that is corrupt or holds Python objects."
            ) from None
    dqn = any(k.startswith("q_net.") for k in state)
    source = "SB3 DQN" if dqn else "SB3 PPO" if "clip_range" in data else "SB3 A2C"
    if not any(k.endswith("features_extractor.cnn.0.weight") for k in state):
        raise UsageError(f"'{path}' holds an SB3 policy without the Nature CNN (an MlpPolicy, or another features "
                         "extractor); only CnnPolicy agents of PPO, A2C and DQN load here.")  # fmt: skip
    if any(not torch.equal(v, state[k.split("_", 1)[1]]) for k, v in state.items() if k.startswith(SB3_COPIES[:2])):
        raise UsageError(f"'{path}' has a CNN of its own for the value (share_features_extractor=False); "
                         "this project's Agent shares one.")  # fmt: skip
    shape, dtype = sb3_observations(path, data)
    if shape != [4, 84, 84] or dtype != "uint8":
        raise UsageError(f"'{path}' saw {dtype} observations of shape {tuple(shape)}, not 4 stacked 84x84 uint8 "
                         "frames (SB3's AtariWrapper and VecFrameStack(4)).")  # fmt: skip
    normalized = sb3_normalize_images(path, data)
    epsilon = float(data.get("exploration_final_eps", 0.05)) if dqn else None
    agent = nature_cnn(path, state, source, epsilon, scale=1.0 if normalized else 255.0)
    env_id, names = game_of(path, env_id, agent.n_actions, source)
    run_name = os.path.splitext(os.path.basename(path))[0]
    meta = elsewhere_meta(path, agent, env_id, names, run_name, source, "sb3")
    return agent, meta | dict(global_step=data.get("num_timesteps"))


def sb3_observations(path: str, data: dict) -> tuple:
    """(shape as a list, dtype name) of the observations an SB3 agent saw, from its `data`'s observation_space."""
    space = plain(data.get("observation_space"))
    shape, dtype = (space.get("_shape", space.get("shape")), space.get("dtype")) if isinstance(space, dict) else (0, 0)
    if not (isinstance(shape, list) and all(isinstance(n, int) for n in shape) and isinstance(dtype, str)):
        raise UsageError(f"'{path}' does not say in plain JSON what observations its agent saw (its data's "
                         "observation_space has no _shape and dtype), and it is not unpickled here.")  # fmt: skip
    return shape, dtype


def sb3_normalize_images(path: str, data: dict) -> bool:
    """Whether an SB3 policy divided its frames by 255: `policy_kwargs`' normalize_images, True where it is unset."""
    kwargs = plain(data.get("policy_kwargs", {}))
    normalized = kwargs.get("normalize_images", True) if isinstance(kwargs, dict) else None
    if not isinstance(normalized, bool):
        raise UsageError(f"'{path}' does not say in plain JSON whether its policy divided its frames by 255 "
                         "(policy_kwargs' normalize_images), and it is not unpickled here.")  # fmt: skip
    return normalized


def elsewhere_meta(path, agent, env_id, names, run_name, source, trainer) -> dict:
    """The metadata of an agent trained elsewhere (see load_checkpoint)."""
    meta = dict(path=path, env_id=env_id, action_names=names, n_actions=agent.n_actions, attn_heads=0)
    meta |= dict(run_name=run_name, outputs="policy", source=source, env_options=ENV_OPTIONS[trainer])
    return meta | (dict(outputs="q_values", epsilon=agent.epsilon) if isinstance(agent, QValueAgent) else {})


def env_id_in_path(path: str) -> Optional[str]:
    """The Atari id that a file's name or its folder's name holds, as CleanRL's run folders
    (`runs/<env_id>__<exp_name>__<seed>__<time>/`) and rl-baselines3-zoo's files (`<algo>-<env_id>.zip`) do."""
    names = f"{os.path.basename(os.path.dirname(os.path.abspath(path)))}/{os.path.basename(path)}"
    found = [k for k in game_ids() if re.search(rf"(^|[^A-Za-z0-9]){re.escape(k)}($|[^A-Za-z0-9])", names)]
    return max(found, key=len) if found else None


def game_of(path: str, env_id: Optional[str], n_actions: int, source: str) -> tuple:
    """(env_id, action names) of an agent trained elsewhere: --env-id, else the Atari id its path names; UsageError
    when there is none, when its trainer's wrappers could not have played that id, or when the actions differ."""
    env_id = env_id or env_id_in_path(path)
    if env_id is None:
        raise UsageError(f"'{path}' does not say which game its {source} agent plays; add --env-id, e.g. "
                         "--env-id BreakoutNoFrameskip-v4.")  # fmt: skip
    game = resolve_atari_id(env_id)[0]
    if env_id not in game_ids():  # SB3's and CleanRL's wrappers skip frames themselves
        alternative = " or ".join(game_ids(game)[:1]) or "a NoFrameskip-v4 id"
        raise UsageError(f"{source}'s Atari wrappers skip frames themselves, so its agents could not have played "
                         f"{env_id}, which skips frames too; try {alternative}.")  # fmt: skip
    names = action_names(env_id)
    if len(names) != n_actions:
        raise UsageError(f"the agent in '{path}' has {n_actions} outputs but {env_id} has {len(names)} actions; "
                         "is --env-id right?")  # fmt: skip
    return env_id, names


# ----------------------------------------------------------------------------- the policy an agent plays


def action_probabilities(agent: Agent, logits: torch.Tensor) -> torch.Tensor:
    """The distribution (B, A) the play loop draws actions from: softmax(logits) for a policy; for a Q-value agent
    epsilon-greedy, the greedy action with probability 1 - epsilon + epsilon / A, every other epsilon / A."""
    if isinstance(agent, QValueAgent):
        greedy = F.one_hot(logits.argmax(-1), logits.shape[-1]).float()
        return agent.epsilon / logits.shape[-1] + (1 - agent.epsilon) * greedy
    return logits.float().softmax(-1)


def log_action_probabilities(agent: Agent, logits: torch.Tensor) -> torch.Tensor:
    """The log of `action_probabilities` (log_softmax for a policy: no probability rounds to 0 before the log)."""
    return (
        action_probabilities(agent, logits).log() if isinstance(agent, QValueAgent) else logits.float().log_softmax(-1)
    )


def played_policy(agent: Agent) -> str:
    """What the play loop draws actions from, in words: "policy", or a Q-value agent's "epsilon-greedy, epsilon 0.01"
    (faithfulness.py's and interventions.py's KL follow that distribution)."""
    return f"epsilon-greedy, epsilon {agent.epsilon:g}" if isinstance(agent, QValueAgent) else "policy"
