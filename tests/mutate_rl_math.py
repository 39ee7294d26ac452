"""Mutation check of the RL math: change one term of a formula in ppo_attention.py at a time, run the math tests,
and report which test catches the change. Every mutation must be CAUGHT. The mutations are made in a scratch copy of
the project, so the working tree is never touched, even if the check is killed.

    python tests/mutate_rl_math.py            # all mutations (about 4 minutes on 2 cores)
    python tests/mutate_rl_math.py GAE clip   # only those whose name contains one of the words
"""

import os
import shutil
import subprocess
import sys
import tempfile

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
    ("policy loss: sign of the unclipped term", "pg_loss1 = -advantages * ratio", "pg_loss1 = advantages * ratio"),
    ("policy loss: clipped term not clipped", "pg_loss2 = -advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)", "pg_loss2 = -advantages * ratio"),
    ("value loss: unclipped error against old values, not returns", "v_loss_unclipped = (newvalue - returns) ** 2", "v_loss_unclipped = (newvalue - values) ** 2"),
    ("value loss: clipped error against old values, not returns", "v_loss_clipped = (v_clipped - returns) ** 2", "v_loss_clipped = (v_clipped - values) ** 2"),
    ("value clip: upper bound clip -> 2 clip", "torch.clamp(newvalue - values, -args.clip_coef, args.clip_coef)", "torch.clamp(newvalue - values, -args.clip_coef, 2 * args.clip_coef)"),
    ("value clip: lower bound -clip -> 0", "torch.clamp(newvalue - values, -args.clip_coef, args.clip_coef)", "torch.clamp(newvalue - values, 0, args.clip_coef)"),
    ("value loss without clipping: 0.5 dropped", "v_loss = 0.5 * ((newvalue - returns) ** 2).mean()", "v_loss = ((newvalue - returns) ** 2).mean()"),
    ("entropy bonus: sum over the minibatch, not mean", "entropy_loss = entropy.mean()", "entropy_loss = entropy.sum()"),
    ("penalty: sum over the minibatch, not mean", "attn_ent = attn_entropy.sum(1).mean()", "attn_ent = attn_entropy.sum(1).sum()"),
    ("loss: attention coefficient dropped", "+ args.attn_coef * attn_ent", "+ attn_ent"),
    ("loss: entropy coefficient dropped", "pg_loss - args.ent_coef * entropy_loss", "pg_loss - entropy_loss"),
    ("ratio: old log-prob dropped", 'logratio = newlogprob - minibatch["logprobs"]', "logratio = newlogprob"),
    ("attention entropy: softmax over heads and places together", "F.log_softmax(attn_logits.flatten(2), dim=-1)", "F.log_softmax(attn_logits.flatten(1), dim=-1)"),
    ("GAE: V(s_t) dropped from delta", "nextvalues * nextnonterminal - values[t]", "nextvalues * nextnonterminal"),
    ("GAE: recursion dropped (A = delta)", "advantages[t] = lastgaelam = delta + args.gamma * args.gae_lambda * nextnonterminal * lastgaelam", "advantages[t] = lastgaelam = delta"),
    ("GAE: V(s_t) in place of V(s_t+1)", "nextvalues = next_value if t == T - 1 else values[t + 1]", "nextvalues = next_value if t == T - 1 else values[t]"),
    ("advantages: normalisation ignored", "if args.norm_adv:", "if False:"),
    ("advantages: epsilon 1e-8 -> 1", "(advantages.std() + 1e-8)", "(advantages.std() + 1.0)"),
    ("policy loss: sum over the minibatch, not mean", "pg_loss = torch.max(pg_loss1, pg_loss2).mean()", "pg_loss = torch.max(pg_loss1, pg_loss2).sum()"),
    ("learning rate: annealed one iteration early", "(1.0 - (iteration - 1.0) / num_iterations)", "(1.0 - iteration / num_iterations)"),
    ("done flags: truncated games not done", "next_done = torch.as_tensor(terminations | truncations,", "next_done = torch.as_tensor(terminations,"),
    ("lost life: every termination counted", "lost_life = terminations & (info[\"lives\"] < lives)", "lost_life = terminations"),
    ("value clip around the new value, not the old one", "v_clipped = values + torch.clamp", "v_clipped = newvalue + torch.clamp"),
    ("approx_kl: sign of log-ratio", "approx_kl = ((ratio - 1) - logratio).mean()", "approx_kl = ((ratio - 1) + logratio).mean()"),
    ("clipfrac: > -> <", "clipfrac = ((ratio - 1.0).abs() > args.clip_coef)", "clipfrac = ((ratio - 1.0).abs() < args.clip_coef)"),
    ("rollout: done flags not stored", "obs[step], dones[step] = next_obs, next_done", "obs[step] = next_obs"),
    ("rollout: values not stored", "values[step], actions[step], logprobs[step] = value.flatten(), action, logprob", "values[step], actions[step], logprobs[step] = 0.0, action, logprob"),
    ("rollout: log-probs not stored", "values[step], actions[step], logprobs[step] = value.flatten(), action, logprob", "values[step], actions[step], logprobs[step] = value.flatten(), action, 0.0"),
]
# fmt: on


def main(words: list) -> int:
    original, missed = open(SRC).read(), 0
    with tempfile.TemporaryDirectory(prefix="mutate_rl_math_") as scratch:
        ignore = shutil.ignore_patterns(".git", "runs", "sweeps", "videos", "figures", "__pycache__", ".*_cache")
        shutil.copytree(ROOT, scratch, dirs_exist_ok=True, ignore=ignore)
        for name, before, after in MUTATIONS:
            if words and not any(w in name for w in words):
                continue
            assert original.count(before) == 1, f"{name}: the original text is not found once"
            with open(os.path.join(scratch, "ppo_attention.py"), "w") as f:
                f.write(original.replace(before, after))
            result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *TESTS],
                                    cwd=scratch, capture_output=True, text=True)  # fmt: skip
            failed = [
                line.split(" - ")[0].split("::")[-1] for line in result.stdout.splitlines() if line.startswith("FAILED")
            ]
            missed += result.returncode == 0
            print(f"{'CAUGHT' if result.returncode else 'MISSED'} | {name} | {', '.join(failed)}", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
