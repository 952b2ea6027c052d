"""Errors a user can act on. The CLI prints their message on one line and exits non-zero."""


class LabError(Exception):
    """The lab itself could not do what was asked (engine, images, artifacts, ports)."""

    exit_code = 2


class EngineUnavailable(LabError):
    pass


class ArtifactUnavailable(LabError):
    pass


class UnknownPulsarVersion(LabError):
    pass


class PortTaken(LabError):
    pass
