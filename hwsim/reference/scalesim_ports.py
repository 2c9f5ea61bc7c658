"""SCALE-Sim 3.0.0's SRAM/DRAM port conventions under ``InterfaceBandwidth: USER``, restated.

What SCALE-Sim's ``memory/`` package does (read from ``read_buffer.py``, ``write_buffer.py``,
``double_buffered_scratchpad_mem.py``, ``read_port.py``, ``write_port.py``), as this module models it:

* **Three ports.** The ifmap and the filter buffers each read DRAM over their own port at
  ``IfmapSRAMBankBandwidth`` / ``FilterSRAMBankBandwidth`` words/cycle; the ofmap buffer writes at
  ``Bandwidth``. Read latency 1 cycle, write latency 0.
* **Read buffers are a circular window over the operand's fetch order.** The fetch order (the
  compute unit's prefetch matrix, padding dropped) is cut into ``ceil(buffer words / 100)``-word sets;
  the active window holds ``ceil(active / set)`` sets (active = half the buffer), and each miss slides
  it forward, circularly, by ``ceil(prefetch / set)`` sets, counting ``ceil(prefetch / bw) * bw`` DRAM
  words. A demand that lies *behind* the window (rows demanded in reverse, fold boundaries where the
  skewed order steps back) makes it slide all the way round the operand: that is the re-fetch a fold
  rule does not see. The first window is fetched before cycle 0.
* **Read timing.** Window slides complete on a fixed schedule, ``ceil(prefetch / bw) + 1`` cycles
  apart from cycle -1, whenever they are requested. A demand line that slides the window at time
  ``t`` waits ``p = done - (t + offset)``; SCALE-Sim adds ``p`` to the line's offset and, when
  ``p > 0``, adds it once more (so a wait counts twice, an early slide pulls the offset back).
* **Write buffer.** Outputs fill the ofmap buffer in ``bw``-word lines; when more than the active half
  is occupied and no drain is running, the line being filled is closed and the next ``ceil(drain / bw)``
  lines drain, one a cycle, their full width freed (and counted) at once less the empty slots of the
  last one; a word that finds the buffer full while a drain runs waits for its end.
* **Stalls.** Each demand line ``i`` runs at ``i + stalls so far`` and adds the largest of the three
  operands' waits (never less than 0). DRAM words are the windows' counts and every output written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SETS_PER_BUFFER = 100  # read_buffer.prepare_hashed_buffer: a set is ceil(buffer words / 100) words


@dataclass(frozen=True)
class ReadStream:
    """One read operand: its padded fetch-matrix size, and its demand in order as (line, sets holding
    the word); runs of demands held by the same sets may be cut to their first (:func:`runs`)."""

    fetch_words: int  # prefetch-matrix entries, padding included (sizes the first window's fetch)
    valid_words: int  # fetch-matrix entries that are real addresses
    lines: np.ndarray  # demand line of each demand
    held: np.ndarray  # demands x copies: the sets holding a copy of the word (im2col repeats it), -1 filled


def set_words(buffer_words: int) -> int:
    """Words per set of a read buffer (its window moves a set at a time)."""
    return math.ceil(buffer_words / SETS_PER_BUFFER)


def runs(lines: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first demand of each run held by the same sets: the window can only move on a change."""
    keep = np.r_[True, np.any(held[1:] != held[:-1], axis=1)] if len(held) else np.zeros(0, dtype=bool)
    return lines[keep], held[keep]


@dataclass(frozen=True)
class PortResult:
    dram_words: dict[str, int]  # "ifmap" / "filter" reads, "ofmap" writes
    stall_cycles: int


def _window_slides(stream: ReadStream, buffer_words: int, bandwidth: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(demand lines that slide the window, slides at each, DRAM words) for one read buffer."""
    size = set_words(buffer_words)
    active = math.ceil(buffer_words * 0.5)
    prefetch = buffer_words - active
    n_sets = stream.valid_words // size + 1
    window = min(math.ceil(active / size), n_sets)
    step = min(math.ceil(prefetch / size), n_sets - window)
    first = min(math.ceil(active / bandwidth), math.ceil(stream.fetch_words / bandwidth)) * bandwidth
    lines, held = runs(stream.lines, stream.held)
    start, slide_lines, slide_counts = 0, [], []
    for sets, line in zip(held.tolist(), lines.tolist(), strict=True):
        sets = [s for s in sets if s >= 0]
        slides = 0
        while all((s - start) % n_sets >= window for s in sets):
            start = (start + step) % n_sets
            slides += 1
        if slides:
            if slide_lines and slide_lines[-1] == line:
                slide_counts[-1] += slides
            else:
                slide_lines.append(line)
                slide_counts.append(slides)
    words = first + sum(slide_counts) * math.ceil(prefetch / bandwidth) * bandwidth
    return np.array(slide_lines, dtype=np.int64), np.array(slide_counts, dtype=np.int64), words


class _WriteBuffer:
    """SCALE-Sim's ofmap write buffer, word by word where something happens (``write_buffer.py``).

    Words are packed into ``bw``-word lines; a drain first closes the line being filled (so a short
    line joins the queue), then sends the next ``ceil(half / bw)`` queued lines and frees, at once,
    their full width less the empty slots of the last one (a short line inside the batch counts whole).
    """

    def __init__(self, total: int, bandwidth: int) -> None:
        self.total, self.active, self.bw = total, math.ceil(total * 0.5), bandwidth
        self.batch = math.ceil((total - self.active) / bandwidth)  # lines per drain
        self.freed = 0  # words the drains have credited back
        self.closed, self.sent = 0, 0  # lines queued so far, lines drained so far
        self.packed = 0  # words packed into closed lines
        self.short: dict[int, int] = {}  # closed line -> its words, for lines closed short
        self.drain_end = 0
        self.words = 0  # DRAM writes

    def _drain(self, upto: int, now: int) -> None:
        """Close the lines holding words up to ``upto`` and drain the next batch starting at ``now``."""
        if upto > self.packed:
            lines, rest = divmod(upto - self.packed, self.bw)
            self.closed += lines + (rest > 0)
            if rest:
                self.short[self.closed - 1] = rest
            self.packed = upto
        count = min(self.batch, self.closed - self.sent)
        if count <= 0:
            return
        last = self.sent + count - 1
        moved = count * self.bw - (self.bw - self.short[last] if last in self.short else 0)
        self.sent += count
        self.freed += moved
        self.words += moved
        self.drain_end = now + count - 1

    def service(self, first: int, last: int, now: int) -> int:
        """Store words ``first + 1 .. last`` (a demand line at ``now``); return its wait."""
        start, position = now, first
        while position < last:
            if now < self.drain_end:
                full = max(position + 1, self.freed + self.total)  # the word that leaves no room
                if full > last:
                    break
                now, position = self.drain_end, full  # that word waits for the drain
            else:
                over = max(position + 1, self.freed + self.active + 1)  # the word past the active half
                if over > last:
                    break
                self._drain(over, now)
                position = over
        return now - start

    def finish(self, written: int) -> None:
        """Drain everything left once the array is done (SCALE-Sim's ``empty_all_buffers``)."""
        self._drain(written, self.drain_end)
        while self.sent < self.closed:
            self._drain(written, self.drain_end + 1)

    def next_line(self, written: np.ndarray, line: int, stalls: int) -> int:
        """The first line from ``line`` at which it stores a word that waits or starts a drain."""
        free_line = max(self.drain_end - stalls, line)  # first line whose time reaches the drain's end
        over = int(np.searchsorted(written, self.freed + self.active, side="right"))
        candidate = max(over, free_line)
        full = int(np.searchsorted(written, self.freed + self.total - 1, side="right"))
        return min(candidate, max(full, line)) if full < free_line else candidate


def simulate_ports(reads: dict[str, ReadStream], writes: np.ndarray, buffer_words: dict[str, int],
                   read_bw: int, write_bw: int) -> PortResult:
    """Stalls and DRAM words of one layer: ``reads`` per read buffer, ``writes`` outputs per demand line."""
    slides, words = {}, {}
    for name, stream in reads.items():
        lines, counts, words[name] = _window_slides(stream, buffer_words[name], read_bw)
        slides[name] = dict(zip(lines.tolist(), counts.tolist(), strict=True))
    slide_cycles = {name: math.ceil((buffer_words[name] - math.ceil(buffer_words[name] * 0.5)) / read_bw) + 1
                    for name in reads}
    done = {name: -1 for name in reads}
    out = _WriteBuffer(buffer_words["ofmap"], write_bw)
    written = np.cumsum(writes)
    stalls = 0
    read_events = sorted(set().union(*(s.keys() for s in slides.values())))
    next_read = 0
    line = 0
    n_lines = len(writes)
    while line < n_lines:
        # next line where something happens: a window slide, or a word that waits or starts a drain
        line = min([out.next_line(written, line, stalls)] + read_events[next_read:next_read + 1])
        if line >= n_lines:
            break
        now = line + stalls
        wait = 0
        for name in reads:
            offset = 1
            for _ in range(slides[name].get(line, 0)):
                done[name] += slide_cycles[name]
                p = done[name] - (now + offset)
                offset += 2 * p if p > 0 else p
            wait = max(wait, offset - 1)
        wait = max(wait, out.service(int(written[line - 1]) if line else 0, int(written[line]), now))
        if next_read < len(read_events) and read_events[next_read] == line:
            next_read += 1
        stalls += wait
        line += 1
    out.finish(int(written[-1]) if n_lines else 0)
    words["ofmap"] = out.words
    return PortResult(words, stalls)
