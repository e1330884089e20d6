"""Surprise's ``SVD`` with its per-epoch rating walk served from a list.

Surprise's SGD loops ``for u, i, r in trainset.all_ratings()`` once per epoch, and
``all_ratings`` is a Python generator over the trainset's dict of lists: resuming it for every
rating of every epoch was over half of each fit (py-spy on the 100k-user shop). This subclass
materialises the same ratings, in the same order, once per fit, so the SGD updates and the learned
factors are exactly Surprise's (checked against ``surprise.SVD`` in the tests). Import this module
inside functions only: it imports Surprise.
"""

from __future__ import annotations

from surprise import SVD


class ListedRatingsSVD(SVD):
    """``surprise.SVD`` fitted over a materialised list of the trainset's ratings."""

    def fit(self, trainset):
        ratings = list(trainset.all_ratings())
        trainset.all_ratings = lambda: ratings  # shadows the generator method for this fit only
        try:
            return super().fit(trainset)
        finally:
            del trainset.all_ratings
