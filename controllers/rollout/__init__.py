"""The rollout controller: which spec version runs in each slot (see ``decide``)."""
