"""Integrated information decomposition (PhiID) between attention heads, pure numpy.

Split by concern; import from the submodule that owns a name:

* :mod:`.kernel` - the closed-form Gaussian/MMI kernel for one 4x4 correlation (the math,
  golden-tested against phyid), ``phiid_pair``, ``ATOM_NAMES``, ``MIN_SAMPLES``;
* :mod:`.all_pairs` - ``phiid_all_pairs``: the kernel over every head pair (or a chunk);
* :mod:`.reference` - ``phiid_all_pairs_phyid``: the same with the phyid library itself;
* :mod:`.chunks` - the pair list, chunk ranges, ``PairwisePhiID``, merging, matrices.

This file imports nothing, so importing one submodule does not load the others (and a rule's
code hash, derived from its imports, covers only what it uses).
"""
