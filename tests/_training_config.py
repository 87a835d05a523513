"""The short CPU training run the tests that train share, as a ``SamMitoConfig``."""

from sam_mito.training.config import SamMitoConfig


def tiny_training_config(folder, model_dir, dataset_dir, **overrides) -> SamMitoConfig:
    """Four decoder steps of batch 2 on CPU, seed 0: no checkpoints, evaluation, reports or progress bars.

    Parameters
    ----------
    folder : path
        Where the run writes: its output in ``folder/out``, its embedding cache in ``folder/cache``.
    model_dir, dataset_dir : path or str
        The base model (a folder or ``TINY_BASE``) and the prepared dataset.
    **overrides
        Any other ``SamMitoConfig`` setting, replacing these defaults.

    Returns
    -------
    SamMitoConfig
    """
    values = dict(
        output_dir=str(folder / "out"),
        model_name_or_path=str(model_dir),
        dataset=str(dataset_dir),
        embedding_cache_dir=str(folder / "cache"),
        per_device_train_batch_size=2,
        max_steps=4,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        seed=0,
        disable_tqdm=True,
    )
    values.update(overrides)
    return SamMitoConfig(**values)
