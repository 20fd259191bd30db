"""Yosys time of `synth_xilinx` variants on the same jets-MLP designs, with their LUT/FF/CARRY4 counts.

A variant may become the default only if its counts equal the former default's on every design. The
designs: the jets MLP 16-64-32-32-5 with random per-weight bits (tests/models.py, f in 1..4 and 1..5:
~10k and ~15k LUTs), pipelined (latency_cutoff=5) as `hgq synth` writes them. One Yosys at a time.

    KERAS_BACKEND=tensorflow nice -n 10 .venv/bin/python bench/synth_speed.py [--designs j10 j15]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import REPO, format_table, machine_info, write_json

sys.path.insert(0, str(REPO / 'tests'))

#: the former default first: every other variant's counts are compared with it
VARIANTS: dict[str, tuple[tuple[str, ...], bool]] = {
    'before (-flatten -nodsp -noiopad, ltp)': (('-flatten', '-nodsp', '-noiopad'), True),
    'default now (+ -noclkbuf, ltp)': (('-flatten', '-nodsp', '-noiopad', '-noclkbuf'), True),
    'counts only (+ -noclkbuf, no ltp)': (('-flatten', '-nodsp', '-noiopad', '-noclkbuf'), False),
    'not default (+ -nosrl -nobram -nolutram)': (('-flatten', '-nodsp', '-noiopad', '-noclkbuf', '-nosrl',
                                                  '-nobram', '-nolutram'), True),
}
DESIGNS = {'j10': (1, 4), 'j15': (1, 5)}  # weight f range -> ~10k / ~15k LUTs


def design(name: str, out: Path) -> Any:
    import keras
    from models import fit_randomized, random_data

    import hgq.ir as ir
    from hgq import layers as L
    from hgq.export.rtl import write_rtl

    keras.utils.set_random_seed(7)
    x = keras.Input((16,))
    y = L.QDense(64, activation='relu')(x)
    y = L.QDense(32, activation='relu', input_quantizer={'overflow_mode': 'WRAP'})(y)
    y = L.QDense(32, activation='relu')(y)
    y = L.QDense(5)(y)
    model = fit_randomized(keras.Model(x, y), random_data((16,), 4000, 7), 7, act_f=(0, 3), weight_f=DESIGNS[name])
    return write_rtl(ir.from_model(model), out / name, name, latency_cutoff=5, clock_period=5.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--designs', nargs='+', default=list(DESIGNS), choices=list(DESIGNS))
    parser.add_argument('--out', default=str(REPO / 'bench' / 'results' / 'synth_speed.json'))
    args = parser.parse_args()
    from hgq.export.yosys import synthesize

    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.designs:
            prj = design(name, Path(tmp))
            files, memfiles = prj.verilog_files(), prj.memfiles()
            base = None
            for label, (options, ltp) in VARIANTS.items():
                rep = synthesize(files, name, Path(tmp) / name / label.split()[0], memfiles=memfiles,
                                 longest_path=ltp, options=options)
                counts = {k: rep[k] for k in ('LUT', 'FF', 'CARRY4', 'MUXF7', 'MUXF8')}
                base = base or counts
                same = counts == base
                results.append({'design': name, 'da4ml_cost': float(prj.comb.cost), 'variant': label,
                                'options': list(options), 'ltp': ltp, **counts, 'same_counts': same,
                                'yosys_seconds': rep['yosys_seconds'], 'cells': rep['cells']})
                rows.append([name, label, counts['LUT'], counts['FF'], counts['CARRY4'], same, rep['yosys_seconds']])
                print(format_table(['design', 'variant', 'LUT', 'FF', 'CARRY4', 'same counts', 'Yosys s'], rows[-1:]),
                      flush=True)
    print(format_table(['design', 'variant', 'LUT', 'FF', 'CARRY4', 'same counts', 'Yosys s'], rows))
    write_json(Path(args.out), {'machine': machine_info(), 'results': results})


if __name__ == '__main__':
    main()
