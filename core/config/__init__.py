"""llama-swap compatible configuration: loading, macros, validation."""

from core.config.loader import check_config_text, load_config, load_config_text
from core.config.schema import (
    Config,
    ConfigError,
    ConfigProblem,
    Filters,
    GroupConfig,
    MatrixConfig,
    ModelConfig,
    PeerConfig,
    ProfileConfig,
    SelectorConfig,
    Timeouts,
)

__all__ = [
    "Config", "ConfigError", "ConfigProblem", "Filters", "GroupConfig", "MatrixConfig", "ModelConfig",
    "PeerConfig", "ProfileConfig", "SelectorConfig", "Timeouts", "check_config_text", "load_config",
    "load_config_text",
]  # fmt: skip
