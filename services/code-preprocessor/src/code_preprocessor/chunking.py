"""Structure-aware chunks that carry the code itself.

A file is tiled by line ranges: the top-level syntax nodes make the first tiles (blank lines and
comments go with what follows them), small neighbours are merged up to the token budget, and a
tile over the budget is re-tiled from its children (a class into its methods, a function into
its statements), down to single lines. Every line therefore lies in exactly one chunk and the
chunks, concatenated, give back the file byte for byte. Only a single line longer than the
whole budget is cut inside, at a token boundary, and its pieces say so.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate

from sparkstack_common.tokens import count_tokens_bytes, cut_at_tokens
from tree_sitter import Node

from .model import Chunk, Symbol

DEFAULT_BUDGET = 1500
# A tile of more bytes than this many times the budget is split without being counted first.
# Only the size of chunks depends on it, never their correctness.
_SURELY_OVER = 8


def line_offsets(data: bytes) -> list[int]:
    """Byte offset where each line starts, plus ``len(data)`` at the end."""
    if not data:
        return [0]
    pieces = data.split(b"\n")
    # map/accumulate with C callables only: this runs for every line of every file
    offsets = [0, *accumulate(map((1).__add__, map(len, pieces)))]
    rows = len(pieces) - 1 if data.endswith(b"\n") else len(pieces)
    del offsets[rows + 1 :]
    offsets[rows] = len(data)
    return offsets


# A tile: [first row, last row, the syntax nodes that start in it]
Tile = list


class Chunker:
    """Chunks of one file. ``scopes`` maps a definition node's byte range to its qualname."""

    def __init__(
        self,
        data: bytes,
        budget: int,
        language: str,
        scopes: dict[tuple[int, int], str] | None = None,
    ) -> None:
        self.data = data
        self.offsets = line_offsets(data)
        self.rows = len(self.offsets) - 1
        self.budget = max(16, budget)
        self.language = language
        self.scopes = scopes or {}
        self.out: list[Chunk] = []
        # lines waiting to open the next chunk: the header of a class or the decorators of a
        # function about to be split go with the first piece of its body (first, last, tokens)
        self._carry: tuple[int, int, int, str] | None = None

    # -- entry points -------------------------------------------------------------------
    def chunk_tree(self, root: Node, symbols: Sequence[Symbol] = ()) -> list[Chunk]:
        if self.rows == 0:
            return []
        self._emit(self._tiles(root.children, 0, self.rows - 1), "")
        self._flush_carry()
        self._label(symbols)
        return self.out

    def chunk_lines(self, first: int = 0, last: int | None = None, scope: str = "") -> list[Chunk]:
        """Plain line-based chunks (prose, or code with no usable tree)."""
        if self.rows == 0:
            return []
        self._split_lines(first, self.rows - 1 if last is None else last, scope)
        self._flush_carry()
        return self.out

    # -- tiling -------------------------------------------------------------------------
    def _tiles(self, nodes: Sequence[Node], lo: int, hi: int) -> list[Tile]:
        tiles: list[Tile] = []
        for n in nodes:
            s = n.start_point[0]
            row, col = n.end_point
            e = row - 1 if col == 0 and row > s else row
            if e < lo or s > hi:
                continue
            s = max(s, lo)
            e = min(e, hi)
            if tiles and s <= tiles[-1][1]:
                if e > tiles[-1][1]:
                    tiles[-1][1] = e
                tiles[-1][2].append(n)
            else:
                tiles.append([s, e, [n]])
        if not tiles:
            return [[lo, hi, []]]
        tiles[0][0] = lo
        for i in range(1, len(tiles)):
            tiles[i][0] = tiles[i - 1][1] + 1
        tiles[-1][1] = hi
        return tiles

    def _tokens(self, first: int, last: int) -> int:
        return count_tokens_bytes(self.data[self.offsets[first] : self.offsets[last + 1]])

    def _emit(self, tiles: list[Tile], scope: str) -> None:
        # Greedy merge. Counting is the hot path, so a run of tiles is counted in one call
        # while it plainly fits, and tile by tile only near the budget.
        n = len(tiles)
        i = 0
        offsets = self.offsets
        budget = self.budget
        while i < n:
            j = i
            total = 0
            next_big = False
            while j < n:
                e = tiles[j][1]
                if offsets[e + 1] - offsets[tiles[j][0]] > _SURELY_OVER * budget:
                    next_big = True  # no need to count: code averages under 4 bytes a token
                    break
                t = self._tokens(tiles[j][0], e)
                if total + t > budget:
                    next_big = t > budget
                    break
                total += t
                j += 1
                # jump ahead over tiles whose bytes cannot exceed the remaining budget
                room = budget - total
                k = j
                while k < n and offsets[tiles[k][1] + 1] - offsets[tiles[j][0]] <= room // 2:
                    k += 1
                if k > j:
                    total += self._tokens(tiles[j][0], tiles[k - 1][1])
                    j = k
            if j == i:  # the tile alone is over the budget
                self._split_big(tiles[i][0], tiles[i][1], tiles[i][2], scope)
                i += 1
                continue
            if next_big and total <= budget // 4:
                # a class header or decorators before a body that gets split: they open the
                # body's first chunk rather than stand alone
                first = tiles[i][0]
                carry = self._carry
                outer = scope
                if carry is not None and carry[1] + 1 == first and carry[2] + total <= budget:
                    # decorators, then the header
                    first, total, outer = carry[0], total + carry[2], carry[3]
                    self._carry = None
                self._flush_carry()
                self._carry = (first, tiles[j - 1][1], total, outer)
            else:
                self._add(tiles[i][0], tiles[j - 1][1], total, scope)
            i = j

    def _split_big(self, first: int, last: int, nodes: list[Node], scope: str) -> None:
        # Descend into the node covering most of the tile; the tiling of its children spans
        # the whole tile, so header tokens sharing its first line stay in the first piece.
        if nodes:
            big = max(nodes, key=lambda n: n.end_byte - n.start_byte)
            while big.child_count == 1:  # wrappers such as expression statements
                big = big.children[0]
            if big.child_count > 1:
                inner = self.scopes.get((big.start_byte, big.end_byte), scope)
                for n in nodes:  # a decorated definition wraps the symbol's own node
                    inner = self.scopes.get((n.start_byte, n.end_byte), inner)
                tiles = self._tiles(big.children, first, last)
                if len(tiles) > 1:
                    self._emit(tiles, inner)
                    return
                self._split_big(first, last, tiles[0][2], inner)
                return
        self._split_lines(first, last, scope)

    def _split_lines(self, first: int, last: int, scope: str) -> None:
        start = -1
        total = 0
        for row in range(first, last + 1):
            t = self._tokens(row, row)
            if t > self.budget:
                if start >= 0:
                    self._add(start, row - 1, total, scope)
                    start = -1
                self._cut_line(row, scope)
                continue
            if start >= 0 and total + t > self.budget:
                self._add(start, row - 1, total, scope)
                start = -1
            if start < 0:
                start, total = row, 0
            total += t
        if start >= 0:
            self._add(start, last, total, scope)

    def _cut_line(self, row: int, scope: str) -> None:
        line = self.data[self.offsets[row] : self.offsets[row + 1]]
        while line:
            cut = cut_at_tokens(line, self.budget)
            self._piece(line[:cut], row, scope)
            line = line[cut:]

    def _piece(self, raw: bytes, row: int, scope: str) -> None:
        self._flush_carry()
        self.out.append(
            Chunk(
                text=raw.decode("utf-8", "replace"),
                start_line=row + 1,
                end_line=row + 1,
                tokens=count_tokens_bytes(raw),
                scope=scope,
                language=self.language,
                partial_line=True,
            )
        )

    def _flush_carry(self) -> None:
        if self._carry is not None:
            first, last, tokens, scope = self._carry
            self._carry = None
            self._add(first, last, tokens, scope)

    def _add(self, first: int, last: int, tokens: int, scope: str) -> None:
        if self._carry is not None:
            c_first, c_last, c_tokens, c_scope = self._carry
            if c_last + 1 == first and c_tokens + tokens <= self.budget:
                self._carry = None
                # the chunk now opens in the carried lines' scope, the outer one
                first, tokens, scope = c_first, tokens + c_tokens, c_scope
            else:
                self._flush_carry()
        raw = self.data[self.offsets[first] : self.offsets[last + 1]]
        self.out.append(
            Chunk(
                text=raw.decode("utf-8", "replace"),
                start_line=first + 1,
                end_line=last + 1,
                tokens=tokens,
                scope=scope,
                language=self.language,
            )
        )

    def _label(self, symbols: Sequence[Symbol]) -> None:
        starts = [c.start_line for c in self.out]
        for sym in symbols:
            i = bisect_right(starts, sym.start_line) - 1
            if i >= 0:
                self.out[i].symbols.append(sym.qualname)
