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
    ("ratio: old log-prob dropped", "logratio = newlogprob - b_logprobs[mb_inds]", "logratio = newlogprob"),
    ("ratio: old log-probs of the whole batch's first rows", "logratio = newlogprob - b_logprobs[mb_inds]", "logratio = newlogprob - b_logprobs[: len(mb_inds)]"),
    ("GAE: lambda dropped", "args.gamma * args.gae_lambda * nextnonterminal * lastgaelam", "args.gamma * nextnonterminal * lastgaelam"),
    ("GAE: gamma dropped from delta", "delta = rewards[t] + args.gamma * nextvalues * nextnonterminal - values[t]", "delta = rewards[t] + nextvalues * nextnonterminal - values[t]"),
    ("GAE: done mask dropped from delta", "delta = rewards[t] + args.gamma * nextvalues * nextnonterminal - values[t]", "delta = rewards[t] + args.gamma * nextvalues - values[t]"),
    ("GAE: done mask dropped from the recursion", "args.gamma * args.gae_lambda * nextnonterminal * lastgaelam", "args.gamma * args.gae_lambda * lastgaelam"),
    ("GAE: done of step t instead of t + 1", "nextnonterminal = 1.0 - dones[t + 1]", "nextnonterminal = 1.0 - dones[t]"),
    ("GAE: no bootstrap value", "            nextvalues = next_value\n", "            nextvalues = 0.0\n"),
    ("GAE: the bootstrap's done flag ignored", "nextnonterminal = 1.0 - next_done", "nextnonterminal = 1.0"),
    ("GAE: V(s_t) dropped from delta", "nextvalues * nextnonterminal - values[t]", "nextvalues * nextnonterminal"),
    ("GAE: recursion dropped (A = delta)", "advantages[t] = lastgaelam = delta + args.gamma * args.gae_lambda * nextnonterminal * lastgaelam", "advantages[t] = lastgaelam = delta"),
    ("GAE: V(s_t) in place of V(s_t+1)", "nextvalues = values[t + 1]", "nextvalues = values[t]"),
    ("returns = advantages (values dropped)", "returns = advantages + values", "returns = advantages"),
    ("value loss: clipping off", "v_loss = 0.5 * v_loss_max.mean()", "v_loss = 0.5 * v_loss_unclipped.mean()"),
    ("value loss: max -> min", "v_loss_max = torch.max(v_loss_unclipped, v_loss_clipped)", "v_loss_max = torch.min(v_loss_unclipped, v_loss_clipped)"),
    ("value loss: 0.5 dropped", "v_loss = 0.5 * v_loss_max.mean()", "v_loss = v_loss_max.mean()"),
    ("value clip around returns, not old values", "v_clipped = b_values[mb_inds] + torch.clamp(\n            newvalue - b_values[mb_inds],", "v_clipped = b_returns[mb_inds] + torch.clamp(\n            newvalue - b_returns[mb_inds],"),
    ("value clip around the new value, not the old one", "v_clipped = b_values[mb_inds] + torch.clamp(", "v_clipped = newvalue + torch.clamp("),
    ("value clip: upper bound clip -> 2 clip", "            -args.clip_coef,\n            args.clip_coef,\n", "            -args.clip_coef,\n            2 * args.clip_coef,\n"),
    ("value clip: lower bound -clip -> 0", "            -args.clip_coef,\n            args.clip_coef,\n", "            0,\n            args.clip_coef,\n"),
    ("value loss: unclipped error against old values, not returns", "v_loss_unclipped = (newvalue - b_returns[mb_inds]) ** 2", "v_loss_unclipped = (newvalue - b_values[mb_inds]) ** 2"),
    ("value loss: clipped error against old values, not returns", "v_loss_clipped = (v_clipped - b_returns[mb_inds]) ** 2", "v_loss_clipped = (v_clipped - b_values[mb_inds]) ** 2"),
    ("value loss without clipping: 0.5 dropped", "v_loss = 0.5 * ((newvalue - b_returns[mb_inds]) ** 2).mean()", "v_loss = ((newvalue - b_returns[mb_inds]) ** 2).mean()"),
    ("loss: entropy bonus sign", "loss = pg_loss - args.ent_coef * entropy_loss", "loss = pg_loss + args.ent_coef * entropy_loss"),
    ("loss: entropy coefficient dropped", "pg_loss - args.ent_coef * entropy_loss", "pg_loss - entropy_loss"),
    ("loss: value coefficient dropped", "+ v_loss * args.vf_coef +", "+ v_loss +"),
    ("loss: attention penalty sign", "+ args.attn_coef * attn_loss", "- args.attn_coef * attn_loss"),
    ("loss: attention coefficient dropped", "+ args.attn_coef * attn_loss", "+ attn_loss"),
    ("penalty: mean over heads instead of sum", "attn_loss = attn_entropy.sum(1).mean()", "attn_loss = attn_entropy.mean()"),
    ("penalty: sum over the minibatch, not mean", "attn_loss = attn_entropy.sum(1).mean()", "attn_loss = attn_entropy.sum(1).sum()"),
    ("advantages: mean not subtracted", "mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)", "mb_advantages = mb_advantages / (mb_advantages.std() + 1e-8)"),
    ("advantages: population std", "(mb_advantages.std() + 1e-8)", "(mb_advantages.std(unbiased=False) + 1e-8)"),
    ("advantages: epsilon 1e-8 -> 1", "(mb_advantages.std() + 1e-8)", "(mb_advantages.std() + 1.0)"),
    ("advantages: normalisation ignored", "if args.norm_adv:", "if False:"),
    ("approx_kl: old estimator", "approx_kl = ((ratio - 1) - logratio).mean()", "approx_kl = (-logratio).mean()"),
    ("approx_kl: sign of log-ratio", "approx_kl = ((ratio - 1) - logratio).mean()", "approx_kl = ((ratio - 1) + logratio).mean()"),
    ("clipfrac: > 2 clip", "clipfrac = ((ratio - 1.0).abs() > args.clip_coef)", "clipfrac = ((ratio - 1.0).abs() > 2 * args.clip_coef)"),
    ("clipfrac: > -> <", "clipfrac = ((ratio - 1.0).abs() > args.clip_coef)", "clipfrac = ((ratio - 1.0).abs() < args.clip_coef)"),
    ("policy loss: sign of the unclipped term", "pg_loss1 = -mb_advantages * ratio", "pg_loss1 = mb_advantages * ratio"),
    ("policy loss: clipped term not clipped", "pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)", "pg_loss2 = -mb_advantages * ratio"),
    ("policy loss: sum over the minibatch, not mean", "pg_loss = torch.max(pg_loss1, pg_loss2).mean()", "pg_loss = torch.max(pg_loss1, pg_loss2).sum()"),
    ("entropy bonus: sum over the minibatch, not mean", "entropy_loss = entropy.mean()", "entropy_loss = entropy.sum()"),
    ("attention entropy sign", "return -(logp.exp() * logp).sum(-1)", "return (logp.exp() * logp).sum(-1)"),
    ("attention entropy: softmax over heads and places together", "F.log_softmax(attn_logits.flatten(2), dim=-1)", "F.log_softmax(attn_logits.flatten(1), dim=-1)"),
    ("rewards not clipped for learning", "rewards[step] = torch.tensor(np.sign(reward))", "rewards[step] = torch.tensor(reward)"),
    ("logged score clipped", "game_score, game_length = game_score + reward, game_length + 1", "game_score, game_length = game_score + np.sign(reward), game_length + 1"),
    ("forced FIRE steps trained on", "b_inds = np.flatnonzero(~forced.reshape(-1))", "b_inds = np.arange(forced.size)"),
    ("no FIRE after a lost life", "action[torch.as_tensor(fire_next).to(device)] = fire", "pass"),
    ("learning rate: annealed one iteration early", "frac = 1.0 - (iteration - 1.0) / args.num_iterations", "frac = 1.0 - iteration / args.num_iterations"),
    ("done flags: truncated games not done", "next_done = np.logical_or(terminations, truncations)", "next_done = terminations"),
    ("lost life: every termination counted", "lost_life = terminations & (infos[\"lives\"] < lives)", "lost_life = terminations"),
    ("rollout: done flags not stored", "dones[step] = next_done", "pass"),
    ("rollout: values not stored", "values[step] = value.flatten()", "pass"),
    ("rollout: log-probs not stored", "logprobs[step] = logprob", "pass"),
]
# fmt: on


def main(words: list) -> int:
    original, missed = open(SRC).read(), 0
    with tempfile.TemporaryDirectory(prefix="mutate_rl_math_") as scratch:
        ignore = shutil.ignore_patterns(
            ".git", "runs", "training", "sweeps", "videos", "figures", "__pycache__", ".*_cache"
        )
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
