"""``model.init_from=<file>`` in the config initialises the whole network through the strict importer."""

import pytest
import torch

from xvlm_lit.build import build_model
from xvlm_lit.checkpoints.exporter import save_reference

from ..conftest import compose_model


def test_model_init_from_reference_file_gives_the_saved_weights(tmp_path):
    torch.manual_seed(3)
    source = build_model(compose_model("xvlm_tiny3"))
    save_reference(source, tmp_path / "ref.th")
    torch.manual_seed(4)  # a different random init, overwritten by the file
    loaded = build_model(compose_model("xvlm_tiny3", [f"init_from={tmp_path / 'ref.th'}"]))
    a, b = source.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_model_init_from_missing_file_is_named(tmp_path):
    with pytest.raises(Exception, match="nope.th"):
        build_model(compose_model("xvlm_tiny3", [f"init_from={tmp_path / 'nope.th'}"]))
