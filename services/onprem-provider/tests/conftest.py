from touchstone.agent.testing import (  # noqa: F401  (fixtures)
    agent_settings,
    eventually,
    make_feature_set,
    objects,
    stand_in_trainer,
    start_agent,
)
