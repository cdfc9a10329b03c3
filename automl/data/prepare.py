"""Driver-side steps before the search, in the order that fails fastest: scan the data (cheap
checks, before Ray starts), check every backbone's weights load, then — once Ray is up —
prepare the data with the cluster (or find it in the cache)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from automl import paths, storage
from automl.config.schema import Config
from automl.data.shards import prepare
from automl.errors import AutomlError, BackboneError
from automl.runs.layout import CACHE_DIR
from automl.tasks import get_task

if TYPE_CHECKING:
    from automl.data.catalog import Catalog
    from automl.data.shards import PreparedData



def scan_data(config: Config) -> Catalog:
    """List and check the data source (exists, classes, columns, split); decodes nothing."""
    if not config.data.path:
        raise AutomlError(f"{config.source}: no data; pass --data PATH or set data.path")
    return get_task(config.task).scan(config.data)


def preflight_backbones(config: Config) -> dict[str, dict[str, Any]]:
    """Load each backbone's weights once (fail fast, before Ray starts), and return the
    preprocessing of every backbone label."""
    task = get_task(config.task)
    out: dict[str, dict[str, Any]] = {}
    for choice in config.backbones:
        try:
            out[choice.label] = task.preflight(choice, config)
        except BackboneError as exc:
            raise BackboneError(f"{config.source}: backbone {choice.label}: {exc}") from None
    return out


def cache_root(config: Config, run_location: str) -> str:
    """data.cache_dir, or `prepared-data/` beside the run (shared by later searches); a
    local path or a storage URI, like the run."""
    if config.data.cache_dir:
        return paths.resolve(config.data.cache_dir, "data.cache_dir")
    return storage.join(storage.parent(run_location), CACHE_DIR)


def prepare_data(config: Config, catalog: Catalog, preprocessing: dict[str, dict[str, Any]],
                 run_location: str) -> PreparedData:
    """Prepared shards for every backbone's variant, made on the cluster or cached."""
    root = cache_root(config, run_location)
    storage.check_writable(root, "prepared-data cache (data.cache_dir)")
    return prepare(get_task(config.task), catalog, config.data, preprocessing, root,
                   seed=config.data.seed)
