"""Representation-learning methods; each module registers one (see ``base.Method``)."""
