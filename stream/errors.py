"""One exception root, so the CLI can turn any of ours into a message that says what to fix."""


class CrmbonusError(Exception):
    """Base of every error crmbonus raises on purpose; its text is meant for the user."""


class ConfigError(CrmbonusError):
    """A setting, flag or environment variable is wrong."""


class PlanError(ConfigError):
    """The bonus plan file breaks a rule of SPEC section 4; the message names the key."""


class UnreachableError(CrmbonusError):
    """A configured broker or database did not answer; the message names the address."""
