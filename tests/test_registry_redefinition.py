"""segjax.registry: a definition run again (a notebook cell, a reloaded module) replaces itself."""

import pytest

from segjax import registry


def _define(scale):
    """The same definition made twice, as a notebook cell run twice makes it."""
    @registry.register("loss", "test_rerun_scaled")
    def scaled(outputs, batch, *, num_classes, ignore_index, config):
        del batch, num_classes, ignore_index, config
        return scale * outputs
    return scaled


def test_running_a_definition_again_replaces_it():
    first = _define(1.0)
    second = _define(2.0)
    assert first is not second
    assert registry.get("loss", "test_rerun_scaled").factory is second
    assert registry.get("loss", "test_rerun_scaled").factory(3.0, None, num_classes=2,
                                                             ignore_index=255, config=None) == 6.0


def test_another_definition_under_a_taken_name_is_refused():
    _define(1.0)

    def scaled(outputs, batch, *, num_classes, ignore_index, config):  # another qualname
        return outputs
    with pytest.raises(ValueError, match="'test_rerun_scaled' is already registered by "
                                         "(tests.)?test_registry_redefinition"):
        registry.register("loss", "test_rerun_scaled")(scaled)
