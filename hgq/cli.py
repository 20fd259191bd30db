"""The `hgq` command: train (a project's recipe), report (a training run), export (hls4ml), synth (RTL,
Verilator, Yosys, resource report). The work itself lives in hgq.workflow and hgq.export; this module
parses arguments and turns known errors into one clear line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def cmd_export(args: argparse.Namespace) -> int:
    from hgq.training import calibrate
    from hgq.workflow.export import export_checked
    from hgq.workflow.files import check_checkpoint, load_array, load_checkpoint

    check_checkpoint(args.checkpoint)
    calibration = load_array(args.calibration) if args.calibration else None
    model = load_checkpoint(args.checkpoint)
    if calibration is not None:
        print(f'calibrating on {len(calibration)} samples from {args.calibration}')
        calibrate(model, calibration)
    result = export_checked(model, args.out_dir, args.backend, args.io, args.check, calibration)
    return 0 if not result['mismatches'] else 1


def cmd_synth(args: argparse.Namespace) -> int:
    from hgq.export.tools import ToolNotFoundError

    try:
        return _synth(args)
    except ToolNotFoundError as e:
        print(f'hgq synth: {e}', file=sys.stderr)
        return 2


def _synth(args: argparse.Namespace) -> int:
    from hgq.workflow.files import check_checkpoint, load_array, load_checkpoint
    from hgq.workflow.synth import SynthSettings, parse_input_format, require_tools, synthesize_model

    check_checkpoint(args.checkpoint)
    if args.check < 0:
        raise SystemExit(f'hgq synth: --check {args.check} must be >= 0')
    if args.jobs < 1:
        raise SystemExit(f'hgq synth: --jobs {args.jobs} must be >= 1')
    if not args.name.isidentifier():
        raise SystemExit(f'hgq synth: --name {args.name!r} must be a Verilog identifier')
    calibration = load_array(args.calibration) if args.calibration else None
    try:
        input_format = parse_input_format(args.input_format) if args.input_format else None
    except ValueError as e:
        raise SystemExit(f'hgq synth: --input-format: {e}') from None
    require_tools(args.counts_only)
    print(f'loading {args.checkpoint}', flush=True)
    model = load_checkpoint(args.checkpoint)
    settings = SynthSettings(args.out_dir, args.clock_ns, args.latency_cutoff, args.check, args.name, args.jobs,
                             str(args.checkpoint), args.calibration, args.counts_only, input_format)
    report, _ = synthesize_model(model, settings, calibration)
    check = report['check']
    return 0 if check is None or not check['mismatches'] else 1  # None: not simulated (the report says why)


def cmd_import_qkeras(args: argparse.Namespace) -> int:
    from hgq.importers.qkeras import QKerasImportError, import_qkeras
    from hgq.training.files import save_model_atomic

    try:
        model = import_qkeras(args.model)
    except QKerasImportError as e:
        print(f'hgq import-qkeras: {e}', file=sys.stderr)
        return 2
    save_model_atomic(model, args.out)
    print(f'wrote {args.out}')
    return 0


def cmd_ptq(args: argparse.Namespace) -> int:
    from hgq.training import exact_ebops
    from hgq.training.files import save_model_atomic
    from hgq.workflow.files import check_checkpoint, load_array, load_checkpoint
    from hgq.workflow.ptq import PTQError, parse_options, quantize_model, scheme_spec

    try:
        if not str(args.out).endswith('.keras'):
            raise PTQError(f'OUT {args.out!r} must end with .keras (a Keras checkpoint)')
        if args.samples < 1:
            raise PTQError(f'--samples {args.samples} must be >= 1')
        activations = scheme_spec(args.scheme, args.bits, parse_options(args.option, '--option'))
        weights = scheme_spec(args.weight_scheme or args.scheme,
                              args.weight_bits if args.weight_bits is not None else args.bits,
                              parse_options(args.weight_option, '--weight-option'))
        check_checkpoint(args.float_model)
        calibration = load_array(args.calibration)[:args.samples]
        float_model = load_checkpoint(args.float_model, compile=False)
        print(f'quantizing {args.float_model}: weights {weights or "hgq"}, activations {activations or "hgq"}, '
              f'calibrating on {len(calibration)} samples from {args.calibration}', flush=True)
        model = quantize_model(float_model, weights=weights, activations=activations, calibration=calibration)
    except ValueError as e:  # PTQError, BadFileError, a scheme's own argument errors: all name what is wrong
        print(f'hgq ptq: {e}', file=sys.stderr)
        return 2
    import numpy as np

    diff = np.abs(np.asarray(float_model.predict(calibration, verbose=0), np.float64)
                  - np.asarray(model.predict(calibration, verbose=0), np.float64))
    save_model_atomic(model, args.out)
    print(f'max |hgq - float| on the calibration samples: {diff.max():.4g} (mean {diff.mean():.4g}); '
          f'EBOPs {float(exact_ebops(model)):.0f}')
    print(f'wrote {args.out}; next: hgq export {args.out} DIR, or fine-tune it with model.fit (QAT)')
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from hgq.workflow import ConfigError, find_project, train

    try:
        project = find_project(args.project)
        config = project.config(args.config)
        if args.epochs is not None:
            if args.epochs < 1:
                raise ConfigError(f'--epochs {args.epochs} must be >= 1')
            config['training']['epochs'] = args.epochs
        out = Path(args.out or f'runs/{project.name}')
        print(f'project {project.name} ({project.directory}), run folder {out}', flush=True)
        index = train(project, config, out, restart=args.restart, init=args.init)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f'hgq train: {e}', file=sys.stderr)
        return 2
    from hgq.workflow.report import pareto_table

    print(f'\nPareto front ({len(index["checkpoints"])} checkpoints in {out / "checkpoints"}):')
    print(pareto_table(index))
    print(f'\nnext: hgq report {out}')
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from hgq.export.tools import ToolNotFoundError
    from hgq.workflow import ConfigError
    from hgq.workflow.report import front_table, write_run_report

    if args.synth < 0 or args.jobs < 1 or not 0 <= args.tolerance < 1:
        print('hgq report: --synth must be >= 0, --jobs >= 1 and --tolerance in [0, 1)', file=sys.stderr)
        return 2
    try:
        report = write_run_report(args.run_dir, epoch=args.epoch, tolerance=args.tolerance, synth=args.synth,
                                  jobs=args.jobs)
    except (ConfigError, FileNotFoundError, ToolNotFoundError, ValueError) as e:
        print(f'hgq report: {e}', file=sys.stderr)
        return 2
    rows = report['front']
    chosen = next(r for r in rows if r['epoch'] == report['chosen']['epoch'])
    fl = report['float']
    if fl:
        print(f'float baseline: test accuracy {fl["test_accuracy"]:.4f}')
    print(front_table(rows, chosen))
    print(f'chosen: epoch {chosen["epoch"]} ({report["chosen"]["rule"]})')
    print(f'wrote {Path(args.run_dir) / "report"}: report.md, report.json and plots ({report["seconds"]:.0f} s)')
    bad = [r for r in rows if r.get('mismatches')]
    return 1 if bad else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from hgq.export.tools import ToolNotFoundError
    from hgq.workflow import ConfigError, find_project
    from hgq.workflow.config import read_yaml
    from hgq.workflow.sweep import plan, run_serial

    if args.synth < 0 or args.jobs < 1 or args.retries < 0 or (args.num_cpus is not None and args.num_cpus < 1):
        print('hgq sweep: --synth must be >= 0, --jobs >= 1, --retries >= 0 and --num-cpus >= 1', file=sys.stderr)
        return 2
    if args.serial and args.address:
        print('hgq sweep: --serial runs here without Ray; leave out --address (or --serial)', file=sys.stderr)
        return 2
    failed = ''
    try:
        project = find_project(args.project)
        sweep = read_yaml(args.sweep)
        out = Path(args.out or f'runs/{project.name}_sweep')
        trials = plan(project, sweep, out, config_path=args.base)
        if args.report_only:
            pass
        elif args.serial:
            run_serial(project, sweep, out, config_path=args.base)
        else:
            from hgq.workflow.sweep_ray import SweepError, run_ray

            try:
                run_ray(project, sweep, out, config_path=args.base, address=args.address, local_cpus=args.num_cpus,
                        retries=args.retries)
            except SweepError as e:
                failed = str(e)
        if args.no_report:
            print(f'{len(trials)} trials in {out}')
            return 0
        from hgq.workflow.sweep_report import write_sweep_report

        report = write_sweep_report(trials, out, synth=args.synth, jobs=args.jobs, title=project.name)
    except (ConfigError, FileNotFoundError, ToolNotFoundError, ValueError) as e:
        print(f'hgq sweep: {e}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    from hgq.workflow.sweep_report import front_markdown

    print(front_markdown(report['front'], report['trials']))
    done = sum(t['done'] for t in report['trials'])
    print(f'{done}/{len(trials)} trials done in {out}; merged report: {out / "report" / "sweep.md"}')
    if failed:
        print(f'hgq sweep: {failed}', file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='hgq', description='Train and export high-granularity quantized networks.')
    sub = parser.add_subparsers(dest='command', required=True)
    train = sub.add_parser('train', help="train a project's model, keeping the Pareto-optimal checkpoints",
                           description='Train the float baseline and then the HGQ model of PROJECT (a name under '
                           'projects/ or a folder with project.py) as its config.yaml says; keeps the '
                           'Pareto-optimal epochs (val accuracy vs EBOPs) in OUT/checkpoints. Run it again to '
                           'resume an interrupted run.')
    train.add_argument('project', help='project name (e.g. jets, fashion_mnist) or folder')
    train.add_argument('--config', metavar='FILE', help="a YAML config (default: the project's config.yaml)")
    train.add_argument('--epochs', type=int, metavar='N', help='override training.epochs')
    train.add_argument('--out', metavar='DIR', help='the run folder (default runs/PROJECT)')
    train.add_argument('--restart', action='store_true', help='discard an earlier run in the folder')
    train.add_argument('--init', metavar='MODEL.keras',
                       help="start from this hgq model instead of the project's (e.g. from hgq import-qkeras: its "
                            'fixed formats become learnable at the same bits)')
    train.set_defaults(run=cmd_train)
    sweep = sub.add_parser('sweep', help='train many configs of a project (grid/random), each an hgq train run')
    sweep.add_argument('project', help='project name or folder')
    sweep.add_argument('--config', dest='sweep', metavar='SWEEP.yaml', required=True, help='the sweep file')
    sweep.add_argument('--base', metavar='FILE', help="the config the overrides apply to (default: config.yaml)")
    sweep.add_argument('--out', metavar='DIR', help='folder of the trial run folders (default runs/PROJECT_sweep)')
    sweep.add_argument('--serial', action='store_true', help='run trials one after another, without Ray')
    sweep.add_argument('--address', metavar='ADDR', help='join a Ray cluster: ray://HOST:10001, HOST:6379 or auto '
                       '(default: start a local Ray instance with resources.local_cpus CPUs)')
    sweep.add_argument('--num-cpus', type=int, metavar='N', help='CPUs of the local Ray instance (overrides '
                       'resources.local_cpus)')
    sweep.add_argument('--retries', type=int, default=3, metavar='N', help='times a trial whose worker died is '
                       'retried, each resuming after its last saved epoch (default 3)')
    sweep.add_argument('--report-only', action='store_true', help='train nothing; write the merged report of the '
                       'trials so far')
    sweep.add_argument('--no-report', action='store_true', help='skip the merged report')
    sweep.add_argument('--synth', type=int, default=0, metavar='K', help='synthesize K global-front points (Yosys '
                       'LUTs, accuracy vs LUTs; needs the RTL tools)')
    sweep.add_argument('--jobs', type=int, default=2, metavar='J', help='parallel jobs of each synthesis')
    sweep.set_defaults(run=cmd_sweep)

    report = sub.add_parser('report', help='evaluate, plot (and synthesize) the Pareto checkpoints of a run',
                            description='Calibrate every Pareto checkpoint of RUN_DIR, measure its test accuracy '
                            'and exact EBOPs, choose one, and write RUN_DIR/report/ (report.md, report.json, '
                            'accuracy vs EBOPs, bit-width histograms, per-weight bit-width map, history). With '
                            '--synth K, K checkpoints also go through hgq synth (LUTs, latency, accuracy vs LUTs).')
    report.add_argument('run_dir', help='a folder written by hgq train')
    report.add_argument('--epoch', type=int, metavar='N', help='the checkpoint to detail (default: chosen by '
                        '--tolerance)')
    report.add_argument('--tolerance', type=float, default=0.01, help='choose the fewest EBOPs within this much '
                        'val accuracy of the best (default 0.01)')
    report.add_argument('--synth', type=int, default=0, metavar='K', help='synthesize K checkpoints: the chosen '
                        'one and others spread along the front (default 0)')
    report.add_argument('--jobs', type=int, default=2, metavar='J', help='processes for hgq synth (default 2)')
    report.set_defaults(run=cmd_report)

    export = sub.add_parser('export', help='export a checkpoint bit-exactly')
    export.add_argument('checkpoint', help='a .keras checkpoint of hgq layers')
    export.add_argument('--to', choices=['hls4ml'], default='hls4ml', help='the backend')
    export.add_argument('out_dir', help='the project directory to write')
    export.add_argument('--backend', choices=['Vitis', 'Vivado'], default='Vitis')
    export.add_argument('--io', choices=['parallel', 'stream'], default='parallel')
    export.add_argument('--check', type=int, default=10_000, metavar='N',
                        help='compare the C-simulation with the exact emulator on N random inputs (0: skip)')
    export.add_argument('--calibration', metavar='FILE', help='.npy/.npz inputs to calibrate activation ranges on '
                        '(also checked); without it the ranges stored in the checkpoint are used')
    export.set_defaults(run=cmd_export)

    imp = sub.add_parser('import-qkeras', help='import a QKeras .h5/.keras model as fixed hgq layers')
    imp.add_argument('model', help='a QKeras model saved with model.save (.h5 or .keras)')
    imp.add_argument('out', help='the .keras file to write')
    imp.set_defaults(run=cmd_import_qkeras)

    ptq = sub.add_parser('ptq', help='quantize a trained float Keras model (PTQ) into an hgq model',
                         description='Rebuild FLOAT_MODEL (Dense, Conv1D/2D, BatchNormalization, ReLU, pooling, '
                         'Flatten, Reshape, Add, Concatenate, Dropout) from hgq layers with the same weights, '
                         'quantize every weight slot with --weight-scheme and every activation slot with '
                         '--scheme, calibrate on --samples inputs of --calibration and write OUT (exportable as '
                         'it is, or fine-tuned with model.fit).')
    ptq.add_argument('float_model', help='a .keras file of a trained float Keras 3 model')
    ptq.add_argument('out', help='the .keras file to write')
    ptq.add_argument('--calibration', metavar='FILE', required=True, help='.npy/.npz model inputs to calibrate on')
    ptq.add_argument('--samples', type=int, default=64, metavar='N', help='use the first N calibration inputs '
                     '(default 64)')
    ptq.add_argument('--scheme', default='hgq', metavar='NAME', help='activation (and, without --weight-scheme, '
                     'weight) scheme: hgq (default), lsq, ...')
    ptq.add_argument('--bits', type=int, metavar='B', help='bits of --scheme (schemes with a fixed width)')
    ptq.add_argument('--option', action='append', metavar='KEY=VALUE', help='another argument of the activation '
                     'scheme (repeatable), e.g. --option round_mode=RND')
    ptq.add_argument('--weight-scheme', metavar='NAME', help='weight scheme if not --scheme: hgq, lsq, post, ...')
    ptq.add_argument('--weight-bits', type=int, metavar='B', help='bits of the weight scheme (default --bits)')
    ptq.add_argument('--weight-option', action='append', metavar='KEY=VALUE', help='another argument of the '
                     'weight scheme (repeatable), e.g. --weight-option base=pow2')
    ptq.set_defaults(run=cmd_ptq)

    synth = sub.add_parser('synth', help='RTL, Verilator check, Yosys synthesis and a resource report',
                           description='Write Verilog of a checkpoint (da4ml), check a Verilator simulation of it '
                           'against the exact emulator, synthesize it with Yosys (LUT/FF/CARRY4, longest path), and '
                           'write OUT_DIR/report.md, report.json and resources.png.')
    synth.add_argument('checkpoint', help='a .keras checkpoint of hgq layers')
    synth.add_argument('out_dir', help='the directory to write (rtl/, the report)')
    synth.add_argument('--clock-ns', type=float, default=5.0, metavar='NS',
                       help='the clock period the latency is stated at (default 5)')
    synth.add_argument('--latency-cutoff', type=float, default=5, metavar='N',
                       help="pipeline stages of at most N da4ml delay units (~ one adder each); <= 0: "
                       "combinational (default 5)")
    synth.add_argument('--calibration', metavar='FILE', help='.npy/.npz inputs to calibrate activation ranges on '
                       '(also checked); without it the ranges stored in the checkpoint are used')
    synth.add_argument('--check', type=int, default=10_000, metavar='N',
                       help='compare the Verilator simulation with the exact emulator on N random inputs '
                       '(plus the calibration inputs; 0: skip the simulation)')
    synth.add_argument('--counts-only', action='store_true',
                       help='Yosys LUT/FF/CARRY4 counts only, the same counts as a full run: no Verilator '
                       'build or check against the emulator (--check ignored), no longest-path analysis; '
                       'Verilator, make and g++ are not needed')
    synth.add_argument('--input-format', metavar='FMT',
                       help='the input port word, e.g. ap_fixed<12,4> or k,i,f: what the upstream delivers; inputs '
                       'on that grid are exact (default: the policy of hgq.ir.ports, exact for every float32)')
    synth.add_argument('--name', default='hgq_model', help='the top module\'s name (default hgq_model)')
    synth.add_argument('--jobs', type=int, default=2, metavar='J',
                       help='processes to use: with J >= 2 Yosys runs beside the Verilator build (J-1 jobs); '
                       '1: one step after another (default 2)')
    synth.set_defaults(run=cmd_synth)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault('KERAS_BACKEND', 'jax')
    from hgq.workflow.files import BadFileError

    try:
        return int(args.run(args) or 0)
    except BadFileError as e:  # a file the user gave us: one line naming it, no traceback
        print(f'hgq {args.command}: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
