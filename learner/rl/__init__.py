"""The RL learner: rollouts from the current policy, verifiable rewards, a swappable
learning signal (ReCast or the group-normalised baseline), reference KL, diagnostics."""
