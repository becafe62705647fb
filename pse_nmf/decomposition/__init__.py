"""Dictionary denoisers: beta-NMF, its solver and penalties, and the estimators built on them.

One update loop (``_nmf._solve``) serves every estimator; ``_base`` holds the
family base of the dictionary denoisers (a fixed speech dictionary, noise atoms
learned on the input, a mask). The estimators are also importable from
:mod:`pse_nmf`.
"""

from ._exemplar import ExemplarNMF
from ._mld import MLD
from ._nmf import BetaNMF, beta_divergence, non_negative_factorization
from ._online import OnlineNMF
from ._semi import SemiSupervisedNMF
from ._usm import USM

__all__ = [
    "BetaNMF",
    "SemiSupervisedNMF",
    "USM",
    "MLD",
    "ExemplarNMF",
    "OnlineNMF",
    "non_negative_factorization",
    "beta_divergence",
]
