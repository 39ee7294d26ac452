"""Mutation check of the RL math: change one term of a formula in ppo_attention.py at a time, run the math tests,
and report which test catches the change. Every mutation must be CAUGHT. The file is restored afterwards.

    python tests/mutate_rl_math.py            # all mutations (about 5 minutes on 2 cores)
    python tests/mutate_rl_math.py GAE clip   # only those whose name contains one of the words
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "ppo_attention.py")
TESTS = ["tests/test_rl_math.py", "tests/test_ppo_attention.py::test_entropy_uniform_maps_give_heads_times_ln49"]
# (what changes, the original text, the mutated text)
# fmt: off
MUTATIONS = [
    ("PPO clip: max -> min", "pg_loss = torch.max(pg_loss1, pg_loss2).mean()", "pg_loss = torch.min(pg_loss1, pg_loss2).mean()"),
    ("PPO clip: lower bound 1 - clip -> 1", "torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)", "torch.clamp(ratio, 1, 1 + args.clip_coef)"),
    ("PPO clip: upper bound 1 + clip -> 1 + 2 clip", "torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)", "torch.clamp(ratio, 1 - args.clip_coef, 1 + 2 * args.clip_coef)"),
    ("ratio: exp(logratio) -> exp(-logratio)", "ratio = logratio.exp()", "ratio = (-logratio).exp()"),
    ("GAE: lambda dropped", "args.gamma * args.gae_lambda * nextnonterminal * lastgaelam", "args.gamma * nextnonterminal * lastgaelam"),
    ("GAE: gamma dropped from delta", "delta = rewards[t] + args.gamma * nextvalues * nextnonterminal - values[t]", "delta = rewards[t] + nextvalues * nextnonterminal - values[t]"),
    ("GAE: done mask dropped from delta", "delta = rewards[t] + args.gamma * nextvalues * nextnonterminal - values[t]", "delta = rewards[t] + args.gamma * nextvalues - values[t]"),
    ("GAE: done mask dropped from the recursion", "args.gamma * args.gae_lambda * nextnonterminal * lastgaelam", "args.gamma * args.gae_lambda * lastgaelam"),
    ("GAE: done of step t instead of t + 1", "(next_done if t == T - 1 else dones[t + 1])", "(next_done if t == T - 1 else dones[t])"),
    ("GAE: no bootstrap value", "nextvalues = next_value if t == T - 1 else values[t + 1]", "nextvalues = 0.0 if t == T - 1 else values[t + 1]"),
    ("returns = advantages (values dropped)", "return advantages, advantages + values", "return advantages, advantages"),
    ("value loss: clipping off", "v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()", "v_loss = 0.5 * v_loss_unclipped.mean()"),
    ("value loss: max -> min", "v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()", "v_loss = 0.5 * torch.min(v_loss_unclipped, v_loss_clipped).mean()"),
    ("value loss: 0.5 dropped", "v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()", "v_loss = torch.max(v_loss_unclipped, v_loss_clipped).mean()"),
    ("value clip around returns, not old values", "v_clipped = values + torch.clamp(newvalue - values,", "v_clipped = returns + torch.clamp(newvalue - returns,"),
    ("loss: entropy bonus sign", "loss = pg_loss - args.ent_coef * entropy_loss", "loss = pg_loss + args.ent_coef * entropy_loss"),
    ("loss: value coefficient dropped", "+ v_loss * args.vf_coef +", "+ v_loss +"),
    ("loss: attention penalty sign", "+ args.attn_coef * attn_ent", "- args.attn_coef * attn_ent"),
    ("penalty: mean over heads instead of sum", "attn_ent = attn_entropy.sum(1).mean()", "attn_ent = attn_entropy.mean()"),
    ("advantages: mean not subtracted", "advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)", "advantages = advantages / (advantages.std() + 1e-8)"),
    ("advantages: population std", "advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)", "advantages = (advantages - advantages.mean()) / (advantages.std(unbiased=False) + 1e-8)"),
    ("approx_kl: old estimator", "approx_kl = ((ratio - 1) - logratio).mean()", "approx_kl = (-logratio).mean()"),
    ("clipfrac: > 2 clip", "clipfrac = ((ratio - 1.0).abs() > args.clip_coef)", "clipfrac = ((ratio - 1.0).abs() > 2 * args.clip_coef)"),
    ("rewards not clipped for learning", "rewards[step] = torch.as_tensor(np.sign(reward), device=device)", "rewards[step] = torch.as_tensor(reward, device=device)"),
    ("logged score clipped", "game_score, game_length = game_score + reward, game_length + 1", "game_score, game_length = game_score + np.sign(reward), game_length + 1"),
    ("forced FIRE steps trained on", "chosen, stats = np.flatnonzero(~forced.reshape(-1)), []", "chosen, stats = np.arange(forced.size), []"),
    ("no FIRE after a lost life", "action[torch.as_tensor(fire_next, device=device)] = fire", "pass"),
    ("attention entropy sign", "return -(logp.exp() * logp).sum(-1)", "return (logp.exp() * logp).sum(-1)"),
]
# fmt: on


def main(words: list) -> int:
    original, missed = open(SRC).read(), 0
    try:
        for name, before, after in MUTATIONS:
            if words and not any(w in name for w in words):
                continue
            assert original.count(before) == 1, f"{name}: the original text is not found once"
            with open(SRC, "w") as f:
                f.write(original.replace(before, after))
            result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *TESTS],
                                    cwd=ROOT, capture_output=True, text=True)  # fmt: skip
            failed = [
                line.split("::")[-1].split(" ")[0] for line in result.stdout.splitlines() if line.startswith("FAILED")
            ]
            missed += result.returncode == 0
            print(f"{'CAUGHT' if result.returncode else 'MISSED'} | {name} | {', '.join(failed)}", flush=True)
    finally:
        with open(SRC, "w") as f:
            f.write(original)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
