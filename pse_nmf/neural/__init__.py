"""Neural speech enhancers with the same interface as the NMF estimators (needs PyTorch).

Install with ``pip install "pse_nmf[neural]"``. ``import pse_nmf`` never
imports torch; this subpackage does.

Estimators take NumPy in and give NumPy out: ``fit(speech, noise)``,
``denoise(x)``, ``separate(x)``, ``transform(frames)``, ``save(path)``;
:func:`pse_nmf.load` reads their files (weights as npz arrays, no pickle).

``pretrained("generalist")`` returns the shipped :class:`CompactEnhancer`
(no download; ``pretrained_models()`` gives its model card). Every network
here trains through one loop, :func:`pse_nmf.neural._engine.fit_loop`
(dynamic mixing, schedule, early stopping, checkpoints and resume).
"""

try:
    import torch  # noqa: F401
except ImportError as exc:
    raise ImportError(
        'pse_nmf.neural needs PyTorch, which is not installed: pip install "pse_nmf[neural]"'
    ) from exc

from ._base import BaseNeuralEnhancer
from ._enhancers import DAEEnhancer, GRUEnhancer, TCNEnhancer
from ._distill import DistilledStudent
from ._adaptive import AdaptiveDAE
from ._models import complexity
from ._generalist import CompactEnhancer
from ._snr import SNRPredictor
from ._personal import ContrastiveMixtures, PseudoSE
from ._pretrained import pretrained, pretrained_models
from ._experts import SparseMixtureOfExperts
from ._selector import AutoencoderSelector
from ._speaker import SpeakerEmbedding
from ._extraction import SpeakerExtractor

__all__ = [
    "CompactEnhancer", "GRUEnhancer", "DAEEnhancer", "TCNEnhancer", "DistilledStudent", "AdaptiveDAE", "BaseNeuralEnhancer",
    "complexity", "pretrained", "pretrained_models", "SparseMixtureOfExperts",
    "AutoencoderSelector", "SpeakerEmbedding", "SNRPredictor", "PseudoSE", "ContrastiveMixtures",
    "SpeakerExtractor",
]
