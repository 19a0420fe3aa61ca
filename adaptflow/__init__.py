"""adaptflow: validated, versioned domain-adaptation pipelines (source domain -> target domain).

The library behind stages/*.py (one per DVC stage) and flows/pipeline.py, one package per
layer; a package imports only the layers below it (tests/guarantees/test_layers.py):

    entry           the stage entry points and the `adaptflow` command
    bench           benchmarks that print and record figures
    orchestration   driving DVC from Python; reading a run's results
    adapt | source_model | evaluation | export    the stages' logic
    training        the one loop, its validators and checkpoints
    methods         adaptation methods behind one interface
    models          backbones, the classifier, checkpoints, outputs
    data            image folders, data checks, the decoded cache
    core            params, paths, errors, io, devices, logs, dvclive plots
"""

__version__ = "0.1.0"
