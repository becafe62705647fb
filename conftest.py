"""Root conftest: skip what needs optional dependencies that are not installed."""

collect_ignore_glob = []
try:
    import torch  # noqa: F401
except ImportError:
    # pse_nmf.neural raises ImportError without torch (by design): its doctests cannot be collected
    collect_ignore_glob.append("pse_nmf/neural/*")
try:
    import pyrnnoise  # noqa: F401
except ImportError:
    # RNNoiseEnhancer's doctest runs RNNoise; the module itself imports without pyrnnoise
    collect_ignore_glob.append("pse_nmf/_rnnoise.py")
