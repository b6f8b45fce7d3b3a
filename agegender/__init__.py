"""agegender: real-time age and gender estimation from faces."""

from agegender.contract import VERSION as __version__  # noqa: N811

__all__ = ["Face", "FaceAnalyzer", "FaceStream", "__version__"]


def __getattr__(name: str) -> object:
    # The API pulls in OpenCV and a model backend; `import agegender` stays cheap without it.
    if name in ("Face", "FaceAnalyzer", "FaceStream"):
        from agegender import api

        return getattr(api, name)
    raise AttributeError(f"module 'agegender' has no attribute {name!r}")
