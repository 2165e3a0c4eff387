"""Training: state and optimiser, the sharded train/eval steps, checkpoints, the loop.

    state.py       TrainState, create_train_state (optimisers: segjax.optim)
    sharding.py    make_mesh(config.mesh), batch/replicated shardings, global batches
    step.py        train_step / eval_step (pure functions, jitted with mesh shardings)
    checkpoint.py  plain variable files, Orbax training checkpoints, restore_for_inference
    loop.py        train_and_evaluate(config, workdir)

Modules are imported lazily by their users; this package imports nothing heavy.
"""
