"""Models: importing this package registers every hybridvit model in ``hybridvit.registry.MODELS``."""
from .backbones import *  # noqa: F401,F403
from .estimators import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
