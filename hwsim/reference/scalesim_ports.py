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
* **Write buffer.** Outputs fill the ofmap buffer; when more than the active half is occupied and no
  drain is running, a drain of ``ceil(drain / bw)`` lines starts (its space is freed at once) and ends
  that many cycles later; a line that finds the buffer full while a drain runs waits for its end.
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
    total = buffer_words["ofmap"]
    active = math.ceil(total * 0.5)
    drain_words = math.ceil((total - active) / write_bw) * write_bw
    written = np.cumsum(writes)
    drained, drain_end, stalls = 0, 0, 0
    read_events = sorted(set().union(*(s.keys() for s in slides.values())))
    next_read = 0
    line = 0
    n_lines = len(writes)
    while line < n_lines:
        # next line where something happens: a window slide, or the write buffer crossing a threshold
        candidates = [read_events[next_read]] if next_read < len(read_events) else []
        over_active = int(np.searchsorted(written, drained + active, side="right"))
        full = int(np.searchsorted(written, drained + total, side="left"))
        free_line = max(drain_end - stalls, line)  # first line whose time reaches the drain's end
        candidates.append(max(over_active, free_line, line))
        if full < free_line:
            candidates.append(max(full, line))
        line = min(candidates)
        if line >= n_lines:
            break
        now = line + stalls
        wait = 0
        for name in reads:
            count = slides[name].get(line, 0)
            offset = 1
            for _ in range(count):
                done[name] += slide_cycles[name]
                p = done[name] - (now + offset)
                offset += 2 * p if p > 0 else p
            wait = max(wait, offset - 1)
        occupancy = int(written[line]) - drained
        if now < drain_end and occupancy >= total:
            wait = max(wait, drain_end - now)
            now = drain_end
        if now >= drain_end and occupancy > active:
            moved = min(drain_words, occupancy)
            drained += moved
            drain_end = now + math.ceil(moved / write_bw) - 1
        if next_read < len(read_events) and read_events[next_read] == line:
            next_read += 1
        stalls += wait
        line += 1
    words["ofmap"] = int(written[-1]) if n_lines else 0
    return PortResult(words, stalls)
