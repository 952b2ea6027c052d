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


class ChangeNotApplied(LabError):
    """The change under test did not take effect (a setting the broker reports otherwise).
    Never a verdict on the change: the run ends ERROR."""


class UnknownSetting(LabError):
    """A setting the target release does not have (Pulsar would ignore it silently)."""


class PauseFailed(LabError):
    """The engine could not freeze a service's processes (the service is still there)."""
