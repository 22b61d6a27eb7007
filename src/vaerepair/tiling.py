r"""Repair large images tile by tile, with overlaps blended so that no seam shows.

An image ``(C, H, W)`` is cut into ``T_h x T_w`` tiles whose starts are
spaced by ``T - overlap`` (the last tile of a row or column is moved back so
that it ends at the image border; an image smaller than the tile is one tile
of its own size). Each tile is repaired alone, in batches, and the repairs
are blended with weights that are 1 in a tile's inside and ramp linearly to 0
across the overlap at each side shared with another tile (not at the image
border):

.. math:: \hat x(p) = \frac{\sum_t w_t(p)\, f(x_t)(p)}{\sum_t w_t(p)}.

For a network whose output at a pixel depends on the input within a radius
``r`` (a stack of ``L`` 3x3 convolutions: ``r = L``) the tiled result is
*exactly* the untiled one wherever each weighted tile sees the whole of that
radius: with ``margin >= r`` (the part of each overlap given weight 0; the
default is a quarter of the overlap) and ``overlap >= 2 margin``, the blend
mixes values that are all equal to the untiled output, up to rounding. Memory
is bounded by the tiles in flight (``batch_size`` of them) plus the output and
weight buffers (two float images of the input's size).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import groupby

import torch
from torch import Tensor

from vaerepair._checks import shape_str
from vaerepair.memory import keep_freed_memory

__all__ = ["tile_starts", "blend_weights", "repair_tiled"]


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``0..length`` with at least ``overlap`` in common.

    With ``align > 1`` every start is a multiple of ``align`` (a network that
    downsamples by ``align`` then sees each tile on the same pixel grid as the
    whole image); the last tile then runs from its aligned start to the border,
    so it may be up to ``align - 1`` pixels longer than ``tile``.
    """
    if length <= tile:
        return [0]
    step = max((tile - overlap) // align * align, align)
    starts = list(range(0, length - tile, step))
    last = (length - tile) // align * align
    if last > starts[-1]:
        starts.append(last)
    return starts


def blend_weights(size: int, overlap: int, margin: int, first: bool, last: bool) -> Tensor:
    """1-D weights of one tile ``(size,)``: 0 in the ``margin`` pixels next to an inner edge, then a linear
    ramp up to 1 across the rest of the overlap; no ramp at the image border (``first``/``last``)."""
    w = torch.ones(size, dtype=torch.float64)
    ramp_length = max(overlap - 2 * margin, 1)
    ramp = torch.arange(1, ramp_length + 1, dtype=torch.float64) / (ramp_length + 1)
    edge = torch.cat([torch.zeros(margin, dtype=torch.float64), ramp])[: size // 2]
    if not first:
        w[: len(edge)] = edge
    if not last:
        w[size - len(edge):] = edge.flip(0)
    return w


def repair_tiled(fn: Callable[[Tensor], Tensor], x: Tensor, tile: int | tuple[int, int], overlap: int = 32,
                 margin: int | None = None, batch_size: int = 16, align: int = 1,
                 out_channels: int | None = None) -> Tensor:
    """Repair ``x`` ``(B, C, H, W)`` tile by tile with ``fn`` (tiles ``(n, C, T_h, T_w)`` -> same shape).

    Args:
        fn: the repair of a batch of tiles (e.g. ``model.repair``).
        x: the images; the result has their shape, dtype and device.
        tile: the tile side, or ``(T_h, T_w)``.
        overlap: pixels shared by neighbouring tiles (``< T``).
        margin: pixels of each overlap given weight 0 (default ``overlap // 4``):
            at least the network's receptive radius for a result equal to the
            untiled one.
        batch_size: tiles repaired at once (tiles of one shape go together).
        align: tile starts are multiples of ``align`` (see :func:`tile_starts`);
            the downsampling factor of a U-Net, so that tiles match the whole image.
        out_channels: the channels of ``fn``'s output when they differ from ``C``
            (e.g. a repair and its uncertainty map stacked): the result is
            ``(B, out_channels, H, W)``.
    """
    if x.dim() != 4:
        raise ValueError(f"expected images (B, C, H, W), got {shape_str(x.shape)}")
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    margin = overlap // 4 if margin is None else margin
    if min(th, tw) < 1 or not 0 <= overlap < min(th, tw):
        raise ValueError(f"need 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
    if not 0 <= 2 * margin <= overlap:
        raise ValueError(f"need 0 <= 2 * margin <= overlap, got margin={margin}, overlap={overlap}")
    if align < 1 or (align > 1 and min(th, tw) - overlap < align):
        raise ValueError(f"need align >= 1 and tile - overlap >= align, got tile={tile}, overlap={overlap}, "
                         f"align={align}")
    b, c, h, w = x.shape
    c_out = c if out_channels is None else out_channels
    th, tw = min(th, h), min(tw, w)
    rows, cols = tile_starts(h, th, overlap, align), tile_starts(w, tw, overlap, align)
    height = {top: (h - top if top == rows[-1] else th) for top in rows}
    width = {left: (w - left if left == cols[-1] else tw) for left in cols}
    out = torch.zeros((b, c_out, h, w), dtype=torch.float32 if not x.is_floating_point() else x.dtype, device=x.device)
    total = torch.zeros((b, 1, h, w), dtype=out.dtype, device=x.device)
    weight_rows = {top: blend_weights(height[top], overlap, margin, top == rows[0], top == rows[-1]) for top in rows}
    weight_cols = {left: blend_weights(width[left], overlap, margin, left == cols[0], left == cols[-1])
                   for left in cols}
    with keep_freed_memory():  # the tiles' buffers, freed and allocated again, stay in the process
        places = sorted(((i, top, left) for i in range(b) for top in rows for left in cols),
                        key=lambda p: (height[p[1]], width[p[2]]))
        for (th_k, tw_k), group in groupby(places, key=lambda p: (height[p[1]], width[p[2]])):
            same = list(group)
            for k in range(0, len(same), batch_size):
                chunk = same[k : k + batch_size]
                tiles = torch.stack([x[i, :, top : top + th_k, left : left + tw_k] for i, top, left in chunk])
                repaired = fn(tiles)
                expected = (len(tiles), c_out, th_k, tw_k)
                if tuple(repaired.shape) != expected:
                    raise ValueError(f"the repair of tiles {shape_str(tiles.shape)} gave {shape_str(repaired.shape)}, "
                                     f"expected {shape_str(expected)}")
                for (i, top, left), y in zip(chunk, repaired.to(out.device, out.dtype), strict=True):
                    wt = (weight_rows[top][:, None] * weight_cols[left][None, :]).to(out.device, out.dtype)
                    out[i, :, top : top + th_k, left : left + tw_k] += y * wt
                    total[i, :, top : top + th_k, left : left + tw_k] += wt
    return out / total
