"""Hardware / bit-budget co-design sweeps: accelerator parameters × bit budgets → best allocation per point.

A *design* is one accelerator (a base description with some key paths changed); a *point* is a
design at one bit budget, i.e. one row of the result table. The space file (YAML)::

    designs:                                   # or, for one entry, base/grid/random at the top level
      - base: [bitfusion, int8_systolic]       # preset names or YAML paths; each is swept
        grid:                                  # every combination of these values
          array.rows: [8, 16, 32]
          buffers.filter: [32768, 65536]
      - base: bitfusion
        random:                                # a seeded sample
          samples: 20
          seed: 0
          parameters:
            buffers.ifmap: [16384, 32768, 65536]                 # a list: one of these values
            dram.bandwidth_bits_per_cycle: {min: 64, max: 256}   # integer bounds: an integer
            clock_hz: {min: 2.0e+8, max: 1.0e+9, log: true}      # log-uniform
    patchwise:                                 # optional: every design × each (ρ, levels) setting
      rho: [1.0, 0.5, 0.25]                    # fractions of patch tokens kept at the top level
      levels: ["8/4", "8/2", "8/4/2"]          # token bit levels, highest first ("8/4" or [8, 4])
      apply_to: [q, k, v, attn]                # optional, as in pmq.patchwise.spec; so is score
    budgets: ["0.25x:W8A8", "0.5x:W8A8"]       # optional here: --budgets overrides
    objective: latency                         # optional here: --objective overrides

``patchwise`` makes patch-wise precision a parameter of the space, with the candidates of
``pmq search --patchwise``: ρ = 1 once (the plain allocation), each 2-level set at each ρ < 1, each
3-level set at each rising pair of ρ < 1 (cumulative fractions). The search picks the component bits
under the budget first; the setting then goes on every block, the grouped workload is priced whole
(``ModelTrace.workload``) and top-1 is measured with patch-wise installed. The table gains ``rho`` and
``levels`` columns; a model without a class token is refused before any work.

Work is split so that torch never leaves the parent process: the parent computes the sensitivity
Ω once (cached by content hash), records the model's workload once, and, once every design is
priced, evaluates top-1 once per distinct allocation (cached under ``OUT/evals``) on all its threads,
sorted by bits so that consecutive allocations reuse the model blocks they share
(:func:`pmq.quant.reusing_prefixes`). Each design is priced by :func:`price_design`,
which needs only hwsim, the accelerator models and the Pareto search (``import pmq.sweep`` loads no
torch), on local processes or on a dask.distributed cluster. Per design it builds the cost table
(:func:`pmq.search.cost_table`), one :class:`pmq.search.SearchProblem`, and for each budget the
least-Ω allocation that fits, priced whole-model by ``hwsim.estimate_workload`` (or
``hwsim.simulate``), plus :func:`hwsim.area`.

Modules: ``space`` (the YAML schema and sampling), ``pricing`` (per design, torch-free),
``executors`` (local processes, dask), ``store`` (the resumable folder and its tables), ``run``
(settings, the run loop, the model side).

Output folder: ``sweep.json`` (the :class:`pmq.records.SweepSummary` record, the space as read and the
provenance), ``run.json`` (the manifest, the same record), ``points/p<id>.json`` (one per
finished point, written atomically, the resume state), ``allocations/<id>.json``, ``evals/<id>.json``,
and at the end ``sweep.csv`` (every point, sorted by point id) and ``pareto.csv`` (the points no other
point beats on top-1, latency, energy and area at once). A rerun on the same folder computes only
the designs with missing points; a failing point (e.g. a TileError: a buffer too small for a
layer) is recorded with its error and the sweep goes on.
"""

from pmq.sweep.executors import EXECUTORS
from pmq.sweep.pricing import PricingInputs, price_design
from pmq.sweep.run import (
    FORMAT,
    METHODS,
    SweepConfig,
    SweepInputs,
    SweepResult,
    SweepSettings,
    model_inputs,
    run_sweep,
    sweep,
)
from pmq.sweep.space import Design, Space, check_sweep_objective, load_space, space_from_dict
from pmq.sweep.store import pareto_set

__all__ = [
    "EXECUTORS", "FORMAT", "METHODS", "Design", "PricingInputs", "Space", "SweepConfig", "SweepInputs",
    "SweepResult", "SweepSettings", "check_sweep_objective", "load_space", "model_inputs", "pareto_set",
    "price_design", "run_sweep", "space_from_dict", "sweep",
]
