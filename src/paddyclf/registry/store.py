"""MLflow's Model Registry as paddyclf uses it: the versions of a model name, their files, the champion.

``--registry`` is an MLflow tracking URI (``http://...`` for a lab's server, ``sqlite:///...``), or a
plain folder, which becomes a local store needing no server: ``<folder>/mlflow.db`` (SQLite) and
``<folder>/artifacts``. A version is an MLflow model version whose source is the ``model/`` artifact
folder of a run in the experiment ``paddyclf-registry``::

    model/<stem>.pt            the checkpoint (what ``serve`` loads)
    model/<stem>.onnx(.json)   its ONNX export, checked by ``export`` (for the browser and phones)
    lineage/photos.csv         split, path and sha256 of every photo the model learned or was selected on
    report/...                 the retrain report, when there is one

The version's tags (``paddyclf.*``, :mod:`.lineage`) hold its lineage; the registered model's alias
``champion`` marks the served version. Promotions and rollbacks are events (:mod:`.promotion`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..fileio import file_sha256, staging_folder
from ..training.tracking import mlflow_store

EXPERIMENT = "paddyclf-registry"
CHAMPION = "champion"
TAG_PREFIX = "paddyclf."


@dataclass(frozen=True)
class Version:
    """One registered version, as read from the registry."""

    name: str
    version: int
    source: str
    run_id: str
    created_ms: int
    tags: dict[str, str]
    aliases: tuple[str, ...]

    def tag(self, key: str, default: str | None = None) -> str | None:
        return self.tags.get(TAG_PREFIX + key, default)

    @property
    def is_champion(self) -> bool:
        return CHAMPION in self.aliases


def _version(mv) -> Version:
    return Version(
        mv.name, int(mv.version), mv.source, mv.run_id or "", int(mv.creation_timestamp or 0),
        dict(mv.tags or {}), tuple(getattr(mv, "aliases", None) or ()),
    )  # fmt: skip


def import_mlflow():
    """MLflow's client; a clear UserError without the ``track`` extra."""
    try:
        import mlflow
        from mlflow import MlflowClient
    except ImportError:
        raise UserError("--registry needs MLflow: pip install 'paddyclf[track]' (or mlflow).") from None
    # the registry is quiet unless something goes wrong: no "Creating initial MLflow database tables",
    # no download progress bars in a server's log
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return mlflow, MlflowClient


class ModelRegistry:
    """The registry at ``target`` (a folder or an MLflow URI), through MLflow's own client."""

    def __init__(self, target: str | Path, cache_dir: str | Path | None = None) -> None:
        self.mlflow, client_class = import_mlflow()
        from mlflow.exceptions import MlflowException

        self.error = MlflowException
        self.target = str(target)
        uri, self.artifact_location = mlflow_store(self.target)
        self.client = client_class(tracking_uri=uri, registry_uri=uri)
        if cache_dir is None:
            local = self.artifact_location is not None
            key = hashlib.sha256(uri.encode()).hexdigest()[:16]
            user_cache = Path.home() / ".cache" / "paddyclf" / "registry" / key
            cache_dir = Path(self.target).resolve() / "cache" if local else user_cache
        self.cache_dir = Path(cache_dir)

    def call(self, what: str, function, *args, **kwargs):
        """A client call; MLflow's errors become one paragraph naming the registry."""
        try:
            return function(*args, **kwargs)
        except self.error as exc:
            raise UserError(f"Registry {self.target}: {what} failed ({' '.join(str(exc).split())[:300]}).") from None

    # reading
    def names(self) -> list[str]:
        return sorted(m.name for m in self.call("listing models", self.client.search_registered_models))

    def versions(self, name: str) -> list[Version]:
        self.require_name(name)
        found = self.call("listing versions", self.client.search_model_versions, f"name = '{name}'")
        aliases = self.aliases(name)
        versions = []
        for mv in found:
            mv.aliases = [a for a, v in aliases.items() if v == int(mv.version)]
            versions.append(_version(mv))
        return sorted(versions, key=lambda v: v.version)

    def version(self, name: str, version: int) -> Version:
        self.require_name(name)
        try:
            mv = self.client.get_model_version(name, str(version))
        except self.error:
            known = ", ".join(str(v.version) for v in self.versions(name)) or "none"
            raise UserError(
                f"Model {name!r} has no version {version} in registry {self.target} (versions: {known})."
            ) from None
        mv.aliases = [a for a, v in self.aliases(name).items() if v == version]
        return _version(mv)

    def aliases(self, name: str) -> dict[str, int]:
        model = self.call("reading the model", self.client.get_registered_model, name)
        return {alias: int(version) for alias, version in (model.aliases or {}).items()}

    def model_tags(self, name: str) -> dict[str, str]:
        return dict(self.call("reading the model", self.client.get_registered_model, name).tags or {})

    def champion(self, name: str) -> Version | None:
        self.require_name(name)
        version = self.aliases(name).get(CHAMPION)
        return None if version is None else self.version(name, version)

    def require_name(self, name: str) -> None:
        if not self.has_name(name):
            known = ", ".join(self.names()) or "none yet"
            raise UserError(f"Registry {self.target} has no model named {name!r} (models: {known}).")

    def has_name(self, name: str) -> bool:
        try:
            self.client.get_registered_model(name)
            return True
        except self.error:
            return False

    # files
    def files(self, version: Version) -> Path:
        """The local folder of ``version``'s ``model/`` files, downloaded once into the cache and checked
        against the checkpoint's recorded sha256 (a half-downloaded folder is never used)."""
        folder = self.cache_dir / version.name / f"v{version.version}"
        if self._intact(folder, version):
            return folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = staging_folder(folder)
        try:
            self.call("downloading the files", self.mlflow.artifacts.download_artifacts,
                      artifact_uri=version.source, dst_path=str(staging))  # fmt: skip
            downloaded = staging / Path(version.source.rstrip("/")).name
            if not self._intact(downloaded, version):
                raise UserError(
                    f"Version {version.version} of {version.name!r}: the downloaded checkpoint does not match "
                    "its recorded sha256 (the registry's artifact store is damaged)."
                )
            shutil.rmtree(folder, ignore_errors=True)
            downloaded.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return folder

    def checkpoint(self, version: Version) -> Path:
        return self.files(version) / version.tag("checkpoint", "")

    def onnx(self, version: Version) -> Path | None:
        name = version.tag("onnx")
        return None if not name else self.files(version) / name

    @staticmethod
    def _intact(folder: Path, version: Version) -> bool:
        checkpoint = folder / (version.tag("checkpoint") or "")
        return checkpoint.is_file() and file_sha256(checkpoint) == version.tag("checkpoint_sha256")

    # writing
    def experiment_id(self) -> str:
        found = self.call("reading the experiment", self.client.get_experiment_by_name, EXPERIMENT)
        if found is not None:
            return found.experiment_id
        return self.call("creating the experiment", self.client.create_experiment, EXPERIMENT,
                         artifact_location=self.artifact_location)  # fmt: skip

    def set_champion(self, name: str, version: int) -> None:
        # one row of the registry's database: the alias moves all at once, or not at all
        self.call("moving the champion alias", self.client.set_registered_model_alias, name, CHAMPION, str(version))

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self.call("writing a tag", self.client.set_registered_model_tag, name, key, value)

    def set_version_tag(self, version: Version, key: str, value: str) -> None:
        self.call("writing a tag", self.client.set_model_version_tag, version.name, str(version.version),
                  TAG_PREFIX + key, value)  # fmt: skip
