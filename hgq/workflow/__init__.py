"""From a project to a report: configs, data checks, training runs, run reports (what `hgq train` and
`hgq report` do, usable from Python too).

    project = find_project('jets')
    config = project.config()                  # projects/jets/config.yaml, validated
    train(project, config, 'runs/jets')        # float baseline + HGQ run with its Pareto front
"""

from .config import ConfigError
from .dataset import Dataset, split_arrays, standardize
from .project import Project, find_project
from .train import read_run, train

__all__ = ['ConfigError', 'Dataset', 'Project', 'find_project', 'read_run', 'split_arrays', 'standardize', 'train']
