"""Model sources: a local path, an http(s) URL or ``s3://bucket/key``, fetched into a cache."""

from agent.model_sources.fetcher import ModelFetcher, default_cache_dir
from agent.model_sources.transfer import DownloadProgress, ProgressCallback, forget_download
from paddler.model_source import ModelSource, ModelSourceError, parse_model_source

__all__ = [
    "DownloadProgress",
    "ModelFetcher",
    "ModelSource",
    "ModelSourceError",
    "ProgressCallback",
    "default_cache_dir",
    "forget_download",
    "parse_model_source",
]
