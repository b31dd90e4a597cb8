"""Learning signals for RL on rollout groups: what each candidate of a group teaches.

``groups`` builds rollout groups (beam candidates with log-probabilities and
verifiable rewards); ``repair`` injects a known positive into all-zero groups;
``contrast`` picks the strongest positive and the hardest negative;
``normalise`` is the group-normalised (GRPO) baseline and ReRe's ranking reward;
``objective`` turns advantages into a loss. All pure: no I/O, no model calls.
"""
