"""Training: the train state, the sharded train step, training checkpoints, the loop.

    state.py       TrainState, create_train_state (optimisers: segjax.optim)
    step.py        train_step (a pure function), compile_train_step over a mesh
    checkpoint.py  Orbax training checkpoints (state + data iterator), the best checkpoint
    loop.py        train_and_evaluate(config, workdir)
    logging.py     TensorBoard events, metrics.jsonl, the progress bar

Only training needs this package: inference, evaluation, export and conversion
(`segjax.evaluation`, `segjax.checkpoints`, `segjax.sharding`, ...) never import
it. Modules are imported lazily by their users; this package imports nothing
heavy.
"""
