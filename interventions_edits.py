"""What every part of interventions.py builds on: the agent with its attention maps edited inside the forward pass,
the KL divergence between two policies, and the places of the 7x7 attention grid.

The attention agent's decision passes *through* its 7x7 maps (`masked = features * sum_h attention_h`, then fc,
actor, critic), so the maps can be edited inside the forward pass and the decision watched:

- `after_attention(agent, features, attention)`: the layers after the attention, run with other maps;
  `EditedAgent(agent, {head: map})`: the agent with some heads' maps replaced, which `play.play` plays like any agent.
- `kl_divergence(logits_p, logits_q)`: how far an edit moves the policy, in nats.
- `object_place(box)`: the place of the 7x7 grid whose receptive field is centred nearest an observation box;
  `place_distance(p, q)`: how far apart two places are (Chebyshev), FAR of them being "far from an object".
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ppo_attention import Agent
from saliency import PLACES  # 49: the places of the attention's 7x7 grid

RF_SIZE, RF_STRIDE = Agent.RECEPTIVE_FIELDS["conv3"]  # 36, 8: unit (y, x) sees rows [8y, 8y + 36)
NEAREST_PLACE = np.clip(np.round((np.arange(84) + 0.5 - RF_SIZE / 2) / RF_STRIDE), 0, 6).astype(int)  # by pixel
FAR = 3  # "far from an object": 3 or more places away along a row or a column (Chebyshev distance on the 7x7 grid)


# ----------------------------------------------------------------------------- editing the attention


def after_attention(agent: Agent, features: torch.Tensor, attention: torch.Tensor) -> dict:
    """The layers after the attention, run with `attention` (B, H, 7, 7) in place of the agent's own maps.

    These are the last lines of `Agent.activations` (a test checks that the agent's own maps give its own
    outputs): masked = features * sum_h attention_h, then fc, actor and critic. features: (B, 64, 7, 7).
    """
    masked = features * attention.sum(1, keepdim=True)
    fc = F.relu(agent.fc(masked.flatten(1)))
    return {"attention": attention, "masked": masked, "fc": fc, "logits": agent.actor(fc), "value": agent.critic(fc)}


def replace_heads(attention: torch.Tensor, maps: dict) -> torch.Tensor:
    """attention (B, H, 7, 7) with head h's map replaced by maps[h] ((7, 7) or (B, 7, 7)); other heads as they are."""
    edited = attention.clone()
    for h, m in maps.items():
        edited[:, h] = m.to(edited.device)
    return edited


def uniform_map(device=None) -> torch.Tensor:
    """The map that looks nowhere in particular: 1/49 at every place (a softmax of equal logits)."""
    return torch.full((7, 7), 1 / PLACES, device=device)


def one_hot_maps(device=None) -> torch.Tensor:
    """(49, 7, 7): map p puts all its mass on place p = 7 * y + x."""
    return torch.eye(PLACES, device=device).view(PLACES, 7, 7)


class EditedAgent(nn.Module):
    """The agent with some heads' maps replaced inside the forward pass (`maps`: {head: (7, 7) map}), so that
    everything after the attention (mask, fc, policy, value) follows the edited maps. It has the Agent's
    `activations`, so the shared play loop plays it like the agent itself."""

    def __init__(self, agent: Agent, maps: dict):
        super().__init__()
        self.agent, self.attn_heads, self.n_actions = agent, agent.attn_heads, agent.n_actions
        device = next(agent.parameters()).device
        self.maps = {h: m.to(device) for h, m in maps.items()}

    def activations(self, x: torch.Tensor, check: bool = True) -> dict:
        out = self.agent.activations(x, check)
        if not self.maps:
            return out
        return out | after_attention(self.agent, out["features"], replace_heads(out["attention"], self.maps))


def kl_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) in nats of the policies with these logits (or log-probabilities), over the last dimension."""
    logp, logq = F.log_softmax(logits_p.float(), -1), F.log_softmax(logits_q.float(), -1)
    return (logp.exp() * (logp - logq)).sum(-1).clamp_min(0)  # >= 0; rounding can leave -1e-9


# ----------------------------------------------------------------------------- places of the 7x7 grid


def object_place(box: tuple) -> int:
    """The place (0..48) whose receptive field is centred nearest the centre of an observation box."""
    y0, x0, y1, x1 = box
    return int(NEAREST_PLACE[int((y0 + y1) / 2)] * 7 + NEAREST_PLACE[int((x0 + x1) / 2)])


def place_distance(p, q):
    """The Chebyshev distance between places on the 7x7 grid (arrays or tensors of places)."""
    return np.maximum(abs(p // 7 - q // 7), abs(p % 7 - q % 7))
