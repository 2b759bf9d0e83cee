"""The population layer (pure Python, no torch): the on-disk protocol that the stateless workers share."""
