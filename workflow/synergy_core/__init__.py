"""synergy_core: measure information sharing between attention heads with PhiID.

Reproduces *A Brain-like Synergistic Core in LLMs Drives Behaviour and Learning*
(Urbina-Rodriguez et al., arXiv 2601.06851). Heads are named ``L{layer}H{head}``
everywhere, layers and heads counted from 0.
"""

__version__ = "0.1.0"
