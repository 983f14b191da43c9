"""Behavior policies: the SAC agents trained per task and the offline datasets collected
from their checkpoints (paper Appendix B.2). Above `data` (which stores and samples
datasets) and `algos` (whose SAC it trains)."""
