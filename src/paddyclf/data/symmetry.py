"""The 8 symmetries of the square (the dihedral group D4) as PIL transposes, in one fixed order.

A photo and its mirror or quarter-turned copy are the same photo to the audit; every descriptor it
keeps per orientation is indexed by position in :data:`D4`.
"""

from __future__ import annotations

from PIL import Image

D4 = (
    None,  # identity
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.ROTATE_90,
    Image.Transpose.TRANSVERSE,
    Image.Transpose.ROTATE_180,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.ROTATE_270,
    Image.Transpose.TRANSPOSE,
)

# inverses, by index into D4: the rotations by 90 and 270 degrees swap, every other element is its own inverse
D4_INVERSE = (0, 1, 6, 3, 4, 5, 2, 7)


def transposed(image: Image.Image, index: int) -> Image.Image:
    """``image`` under the symmetry ``D4[index]``."""
    return image if D4[index] is None else image.transpose(D4[index])
