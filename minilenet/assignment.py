"""The units of this copy that are the student's to write.

``minilenet assign`` rewrites this file in a student copy. While any unit is
withheld, the layers default to the NumPy backend (the student's code) and the
fused Numba step is switched off, so nothing stands in for the student's code.
The instructor's copy withholds none.
"""
WITHHELD = frozenset()
