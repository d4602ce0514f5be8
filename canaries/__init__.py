"""Canaries: secret-bearing templates planted in training data (generate), their exposure (exposure),
the one-run epsilon audit (onerun), and the `privaudit canary` pipeline (audit). ModIvA extraction
lives with the other attacks, in privaudit.attacks.modiva."""
