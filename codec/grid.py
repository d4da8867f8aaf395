"""The latent grid of an image: what the bitstream's step-offset map and the heatmaps are laid on.

Torch-free, so that reading a bitstream's header (`bitlens info`) needs none of the networks.
"""
from __future__ import annotations

STRIDE = 64      # total down-sampling of the hyper-latent: images are padded to this multiple
CELL = 16        # pixels per latent cell (and per step-offset map entry)


def latent_grid(height: int, width: int) -> tuple[int, int]:
    """Latent cells (rows, columns) of an image of this size after padding."""
    return -(-height // STRIDE) * (STRIDE // CELL), -(-width // STRIDE) * (STRIDE // CELL)
