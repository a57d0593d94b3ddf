"""OmegaConf resolvers the configs use; registered on ``import rnnzoo`` (before Hydra composes).

``${data_name:${.source},${.view},${.permute}}`` names the data after its knobs, so
``data=fashion data.view=row`` runs are called ``rowfashion`` without a manual ``data.name``.
``${cell_label:${model.cell}}`` names a ``module:Class`` cell by its class (no ':' in
run directories).
"""

from omegaconf import OmegaConf


def _as_bool(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def data_name(source: str, view: str, permute: object) -> str:
    """smnist, psmnist, rowmnist, prowmnist, fashion, pfashion, rowfashion, prowfashion."""
    from rnnzoo.data import canonical_name

    try:
        return canonical_name(str(source), str(view), _as_bool(permute))
    except KeyError:  # an unknown view: build_data reports it with the valid choices
        return f"{source}-{view}"


def cell_label(cell: str | None) -> str:
    """lstm -> lstm, mycells:LeakyRNN -> LeakyRNN; None (model=custom without a cell) ->
    "nocell", so the run starts and fails with the model config's one-line error."""
    from rnnzoo.registry import cell_label as label

    return "nocell" if cell is None else label(str(cell))


def register() -> None:
    OmegaConf.register_new_resolver("data_name", data_name, replace=True)
    OmegaConf.register_new_resolver("cell_label", cell_label, replace=True)
